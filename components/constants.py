"""What the engine's helper processes (the dynamic provider, the policy pack's analyzer) need from
the program's modules at start, in a module that imports nothing heavy: each `up` starts those
processes anew, and what they import at start is waited for before the engine goes on."""

from __future__ import annotations

# How every fix names the Pulumi CLI: the project's own, with the stack's backend (workhub/pulumi_cli.py).
PULUMI_CLI = "scripts/workhub pulumi"

# A script prints this line on stderr where the part it may resume begins (a build's log): the
# provider counts the lines after it, and when it runs the script again after a dropped connection
# it sets stream_from to the next one (components.ssh).
STREAM_MARK = "@@workhub-stream@@"

# A check script (run on refresh) prints a line starting with this for each way the host differs
# from what its command left there (components.resources.command keeps them as the command's drift).
DRIFT_MARK = "drift: "

