from rsgo import create_app

app = create_app()
