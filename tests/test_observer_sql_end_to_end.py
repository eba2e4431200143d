"""A sqlQuery observer switching a stack end to end (README "Observers"): its flag row in a real PostgreSQL,
read through real pyodbc and psqlODBC by the scheduled observer, stops and starts the stack's containers on a
real engine. The reading paths themselves are tests/test_observer_sql.py's."""

from __future__ import annotations

import uuid

from conftest import wait_for_deployment
from support import wait_until
from test_observer_sql import execute, odbc_drivers, pg_connection_string  # noqa: F401 (odbc_drivers: fixture)
from test_observers import write_config


def test_a_sql_flag_puts_the_stack_into_maintenance_and_clearing_it_brings_it_back(make_app, make_stack, tmp_path,
                                                                                    postgres):
    database = f"sqle2e_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    connection_string = pg_connection_string(postgres.port, database)
    execute(connection_string, "CREATE TABLE app_state (name text PRIMARY KEY, flag text)",
            "INSERT INTO app_state VALUES ('maintenance', '0')")
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api")
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack.name}:
            maintenanceObserver:
              type: sqlQuery
              connectionString: "{connection_string}"
              query: SELECT flag FROM app_state WHERE name = 'maintenance'
              maintenanceValue: "1"
              pollingInterval: 1s
        """)
    client = make_app(RSGO_CONFIG=str(config)).test_client()
    wait_for_deployment(client, stack.name, 2)

    def mode():
        return client.get(f"/api/deployments/{stack.name}").json["operationMode"]

    wait_until(lambda: client.get(f"/api/deployments/{stack.name}/observer").json["lastValue"] == "0", 15,
               message="the observer's first reading")
    assert mode() == "Normal"

    execute(connection_string, "UPDATE app_state SET flag = '1' WHERE name = 'maintenance'")
    wait_until(lambda: mode() == "Maintenance", 15, message="the SQL flag to put the stack into Maintenance")

    assert not stack.is_running("api") and stack.is_running("db")
    entry = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (entry["source"], entry["actor"], entry["observedValue"], entry["newMode"]) == (
        "observer", "sqlQuery-observer", "1", "Maintenance")

    execute(connection_string, "UPDATE app_state SET flag = '0' WHERE name = 'maintenance'")
    wait_until(lambda: mode() == "Normal", 15, message="the cleared flag to bring the stack back")
    assert stack.is_running("api") and stack.is_running("db")
    entry = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (entry["source"], entry["observedValue"], entry["newMode"]) == ("observer", "0", "Normal")
