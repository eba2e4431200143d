"""``rsgo maintenance STACK -- CMD``: enter Maintenance, run the command, and always return the stack
to Normal (README "Scripts").

The wrapper undoes only what it did: a stack that was already in Maintenance, or that someone else
changed while the command ran, is left as it is (and the wrapper says so). SIGINT, SIGTERM and SIGHUP
go to the command first; the wrapper leaves Maintenance when the command has ended. With ``--for``
the Maintenance is an ad-hoc window owned by rsgo's schedule, so rsgo itself ends it at the latest
then, even if this process is killed with SIGKILL or its machine dies. Everything the wrapper says
goes to stderr: stdout is the command's.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

from rsgo.client.commands import POLL_SECONDS, follow, request_mode, settle
from rsgo.client.http import FAILED, REFUSED, SLOW_READ_TIMEOUT, UNREACHABLE, USAGE, Api, ClientError, retrying
from rsgo.client.output import Progress, progress_text, trigger_text, when

MAINTENANCE, NORMAL, FAILED_MODE = "Maintenance", "Normal", "Failed"
LEAVE_RETRY_SECONDS = 120  # rsgo restarting (an upgrade, a crash): keep trying to end the Maintenance
SCHEDULE_END_SECONDS = 60  # how long the wrapper lets rsgo's schedule end the Maintenance of a removed window
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
MAX_REASON = 400  # the API takes 500 characters; room for "(command exited with 143)"


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _terminal_sent_it_to_the_command_too() -> bool:
    """Ctrl-C (or a hangup) on the terminal whose foreground we share goes to the whole process group,
    the command included: passing it on again would deliver it twice."""
    for descriptor in (0, 1, 2):
        try:
            if os.isatty(descriptor):
                return os.tcgetpgrp(descriptor) == os.getpgrp()
        except OSError:
            continue
    return False


def _write_stderr(text: str) -> None:
    """Safe inside a signal handler (no buffered stream that the interrupted code may be writing)."""
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


class Signals:
    """The wrapper's handlers for SIGINT, SIGTERM and SIGHUP: the first one is noted (and passed on to
    the command while it runs); the wrapper still leaves Maintenance before it exits."""

    def __init__(self, stack: str):
        self.stack = stack
        self.received: int | None = None
        self.phase = "entering"  # entering, running, leaving
        self._child: subprocess.Popen | None = None
        self._forwarded = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for signum in FORWARDED:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # started with it ignored (nohup, a background job): the command inherits that
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def attach(self, child: subprocess.Popen) -> None:
        """The command runs: a signal that came while it was being started is passed on now."""
        self._child = child
        self.phase = "running"
        if self.received is not None and not self._forwarded:
            self._forward(self.received)

    def detach(self) -> None:
        self._child = None
        self.phase = "leaving"

    def _forward(self, signum: int) -> None:
        self._forwarded = True
        try:
            os.kill(self._child.pid, signum)
        except ProcessLookupError:
            pass

    def _handle(self, signum, _frame) -> None:
        first = self.received is None
        self.received = self.received or signum
        name = _signal_name(signum)
        if self.phase == "running" and self._child is not None and self._child.returncode is None:
            if signum == signal.SIGTERM or not _terminal_sent_it_to_the_command_too():
                self._forward(signum)
                how = "passed to the command"
            else:
                how = "the command got it from the terminal too"
            _write_stderr(f"rsgo: got {name}: {how}; {self.stack} returns to Normal when it ends\n")
        elif self.phase == "entering" and first:
            _write_stderr(f"rsgo: got {name}: the command will not run; {self.stack} returns to Normal as soon "
                          "as entering Maintenance has finished\n")
        elif self.phase == "leaving":
            _write_stderr(f"rsgo: got {name}: returning {self.stack} to Normal first (SIGKILL would leave it "
                          "in Maintenance)\n")


# --for is a safety net for a script, not a way to park a stack: a week at most.
MAX_FOR_SECONDS = 7 * 86400
_DURATION = re.compile(r"(\d+)(s|m|h|d)")


def _checked_duration(duration: str | None) -> str | None:
    """``--for`` as given, refused (usage) when empty or longer than a week; rsgo checks the rest."""
    if duration is None:
        return None
    text = duration.strip().lower()
    if not text:
        raise ClientError("--for needs a duration (like 45m or 2h): without one a killed script would leave the "
                          "stack in Maintenance", USAGE)
    parts = _DURATION.findall(text)
    if parts and _DURATION.sub("", text) == "":
        seconds = sum(int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] for n, unit in parts)
        if seconds > MAX_FOR_SECONDS:
            raise ClientError(f"--for {duration} is longer than a week: end longer maintenance by hand", USAGE)
    return text


class Wrapper:
    def __init__(self, api: Api, stack: str, command: list[str], *, reason: str | None, duration: str | None):
        self.api = api
        self.stack = stack
        self.command = command
        self.duration = _checked_duration(duration)
        self.reason = (reason or f"rsgo maintenance: {os.path.basename(command[0])}")[:MAX_REASON]
        self.window_name = f"cli {socket.gethostname()[:60]} pid {os.getpid()}"
        self.window: dict | None = None  # the --for window, until it is removed
        self.actor: str | None = None  # who the server records for our change (known once it started)
        self.entered_at: str | None = None  # modeChangedAt of the Maintenance (or Failed) we caused
        environment = f" --environment {shlex.quote(api.environment)}" if api.environment else ""
        self.end_command = f"rsgo mode {shlex.quote(stack)} Normal{environment}"

    def say(self, text: str) -> None:
        sys.stderr.write(f"rsgo: {text}\n")
        sys.stderr.flush()

    # -- the whole run ----------------------------------------------------------------------

    def run(self) -> int:
        signals = Signals(self.stack)
        signals.install()
        try:
            return self._run(signals)
        finally:
            signals.restore()

    def _run(self, signals: Signals) -> int:
        unrunnable = self._unrunnable()
        if unrunnable:
            # Found before anything is stopped: a typo in a cron line must not take the stack down every night.
            self.say(f"{unrunnable}; {self.stack} was not touched")
            return 127 if "not found" in unrunnable else 126
        try:
            self._enter()
        except ClientError as error:
            self.say(f"{error}; the command was not run")
            signals.phase = "leaving"
            return self._leave("the command was not run") or error.exit_code
        if signals.received is not None:
            signals.phase = "leaving"
            code = 128 + signals.received
            return self._leave(f"interrupted by {_signal_name(signals.received)} before the command ran") or code
        code = self._run_command(signals)
        if signals.received is not None and code == 0:
            code = 128 + signals.received  # interrupted: the job cannot be taken as done
        ours = self.actor is not None or self.entered_at is not None
        if self.window is not None and ours and code == 0 and not self._still_ours():
            self.say(f"the --for window ended before the command did: {self.stack} left Maintenance while it ran; "
                     "the command's work is not taken as done (exit 3)")
            code = FAILED
        ended = (f"ended by {_signal_name(code - 128)}" if code > 128 and code - 128 in signal.valid_signals()
                 else f"exited with {code}")
        return self._leave(f"command {ended}") or code

    def _run_command(self, signals: Signals) -> int:
        try:
            child = subprocess.Popen(self.command)
        except OSError as error:
            self.say(f"cannot run {self.command[0]}: {error.strerror}")
            signals.phase = "leaving"
            return 127 if isinstance(error, FileNotFoundError) else 126
        signals.attach(child)
        try:
            returncode = child.wait()
        finally:
            signals.detach()
        return 128 - returncode if returncode < 0 else returncode

    # -- entering ---------------------------------------------------------------------------

    def _enter(self) -> None:
        if self.duration:
            self._enter_with_window()
        else:
            self._enter_by_request()

    def _enter_by_request(self) -> None:
        answer = request_mode(self.api, self.stack, MAINTENANCE, reason=self.reason)
        if answer.get("outcome") == "noop":
            state = self.api.stack("GET", self.stack, "/operation-mode").body
            self.say(f"{self.stack} was already in Maintenance (since {when(state.get('modeChangedAt'))}, by "
                     f"{trigger_text(state.get('trigger'))}): running the command; it stays in Maintenance after")
            return
        transition = answer.get("transition") or {}
        self.actor = transition.get("actor")
        if answer.get("outcome") == "running":
            transition = follow(self.api, transition, Progress(sys.stderr, f"{self.stack} -> Maintenance"))
        state = self.api.stack("GET", self.stack, "/operation-mode").body
        self.entered_at = state.get("modeChangedAt")
        if transition.get("outcome") == "failed":
            raise ClientError(f"entering Maintenance failed: {self.stack} is now Failed: {transition.get('error')}",
                              FAILED)
        self.say(f"{self.stack} is in Maintenance ({progress_text(transition)}); running "
                 f"{shlex.join(self.command)[:200]}")

    def _enter_with_window(self) -> None:
        self.window = self.api.stack("POST", self.stack, "/windows", timeout=SLOW_READ_TIMEOUT, body={
            "duration": self.duration, "reason": self.reason, "name": self.window_name}).body
        self.actor = f"schedule:{self.window_name}"
        state = settle(self.api, self.stack, sys.stderr)
        mode, trigger = state.get("operationMode"), state.get("trigger") or {}
        until = when(self.window.get("end"))
        if mode == MAINTENANCE and trigger.get("actor") == self.actor:
            self.entered_at = state.get("modeChangedAt")
            self.say(f"{self.stack} is in Maintenance until {until} at the latest (rsgo ends it then by itself); "
                     f"running {shlex.join(self.command)[:200]}")
        elif mode == MAINTENANCE:
            self.actor = None  # not ours to end
            self.say(f"{self.stack} was already in Maintenance (by {trigger_text(trigger)}): running the command; "
                     "it stays in Maintenance after")
        elif mode == FAILED_MODE and f"(requested by {self.actor})" in (trigger.get("reason") or ""):
            self.entered_at = state.get("modeChangedAt")
            raise ClientError(f"entering Maintenance failed: {self.stack} is now Failed: {self._last_error()}",
                              FAILED)
        elif mode == NORMAL:
            self.actor = None
            raise ClientError(f"{self.stack} stayed Normal: someone ended the schedule's Maintenance by hand, so "
                              "windows do not start it again until theirs is over; run without --for", REFUSED)
        else:
            self.actor = None
            allowed = ", ".join(self.api.stack("GET", self.stack).body.get("allowedModes") or [])
            raise ClientError(f"{self.stack} is {mode}: a maintenance window starts Maintenance only from Normal"
                              f"{f' (from {mode} rsgo allows: {allowed})' if allowed else ''}", REFUSED)

    def _last_error(self) -> str:
        items = self.api.stack("GET", self.stack, "/history", params={"limit": 1}).body.get("items") or [{}]
        return items[0].get("error") or "a container action failed"

    # -- leaving ----------------------------------------------------------------------------

    def _leave(self, why: str) -> int | None:
        """Remove the window, return the stack to Normal if the Maintenance is ours; None when all is
        well, else the exit code (after saying how to end the Maintenance by hand)."""
        try:
            said: set[str] = set()

            def once_per_error(error: ClientError) -> None:
                # Every few seconds for minutes: said once, not once per attempt, or a cron log fills up.
                if str(error) not in said:
                    said.add(str(error))
                    self.say(f"{error}; trying again for up to {LEAVE_RETRY_SECONDS:g} s")

            retrying(lambda: self._leave_once(why), seconds=LEAVE_RETRY_SECONDS, on_retry=once_per_error)
        except ClientError as error:
            self.say(self._still_in_maintenance(error))
            return error.exit_code or UNREACHABLE
        return None

    def _ours(self, state: dict) -> bool:
        mode = state.get("operationMode")
        if self.entered_at is not None:
            return mode in (MAINTENANCE, FAILED_MODE) and state.get("modeChangedAt") == self.entered_at
        trigger = state.get("trigger") or {}
        return self.actor is not None and (
            (mode == MAINTENANCE and trigger.get("actor") == self.actor)
            or (mode == FAILED_MODE and f"(requested by {self.actor})" in (trigger.get("reason") or "")))

    def _leave_once(self, why: str) -> None:
        if self.window is not None:
            try:
                # Removing the window ends the Maintenance it holds, as this token's change with this reason.
                self.api.stack("DELETE", self.stack, f"/windows/{int(self.window['id'])}",
                               body={"reason": f"{self.reason} ({why})"})
            except ClientError as error:
                if error.exit_code != USAGE:  # 404: already removed
                    raise
            self.window = None
        if self.actor is None and self.entered_at is None:
            return  # nothing of ours to end
        # The removal has ended the window's Maintenance unless another window holds it (then it is the
        # schedule's) or a change was running (then rsgo's next window check ends it); asking for Normal
        # meanwhile would only race with it.
        schedule_ends_it_by = time.monotonic() + SCHEDULE_END_SECONDS
        while True:
            state = settle(self.api, self.stack, sys.stderr)
            if not self._ours(state):
                mode = state.get("operationMode")
                self.say(f"{self.stack} is back in Normal" if mode == NORMAL else
                         f"{self.stack} is {mode} (changed meanwhile by {trigger_text(state.get('trigger'))}): "
                         "left as it is")
                return
            if self.actor.startswith("schedule:") and state.get("operationMode") == MAINTENANCE:
                if self._another_window_active():
                    self.say(f"another maintenance window keeps {self.stack} in Maintenance: left to rsgo's schedule")
                    return
                if time.monotonic() < schedule_ends_it_by:
                    time.sleep(POLL_SECONDS)
                    continue
            try:
                answer = request_mode(self.api, self.stack, NORMAL, reason=f"{self.reason} ({why})")
            except ClientError as error:
                if error.code == "transition_in_progress":
                    continue  # someone else's change (the schedule's end of a window): wait for it, look again
                raise
            transition = answer.get("transition") or {}
            if answer.get("outcome") == "running":
                transition = follow(self.api, transition, Progress(sys.stderr, f"{self.stack} -> Normal"))
            if transition.get("outcome") == "failed":
                raise ClientError(f"returning to Normal failed: {transition.get('error')}", FAILED)
            self.say(f"{self.stack} is back in Normal")
            return

    def _unrunnable(self) -> str | None:
        program = self.command[0]
        if shutil.which(program) is not None:
            return None
        if os.path.exists(program) or ("/" not in program and any(
                os.path.exists(os.path.join(folder, program)) for folder in os.get_exec_path())):
            return f"cannot run {program}: not executable"
        return f"cannot run {program}: not found"

    def _still_ours(self) -> bool:
        try:
            return self._ours(self.api.stack("GET", self.stack, "/operation-mode").body)
        except ClientError:
            return True  # not known: leaving says what it finds

    def _another_window_active(self) -> bool:
        windows = self.api.stack("GET", self.stack, "/windows").body.get("items", [])
        return any(window.get("active") for window in windows)

    def _still_in_maintenance(self, error: ClientError) -> str:
        try:
            mode = self.api.stack("GET", self.stack, "/operation-mode").body.get("operationMode")
        except ClientError:
            mode = MAINTENANCE
        ends = (f" (its --for window ends it at {when(self.window.get('end'))} at the latest)"
                if self.window is not None else "")
        state = "is still in Maintenance" if mode == MAINTENANCE else f"is {mode}"
        return f"{error}; {self.stack} {state}{ends}: end it with: {self.end_command}"
