"""What `scripts/workhub up|refresh|destroy` prints, from the engine's events: a failed step's
message once, last, in workhub's words (hub, step, reason, last log lines, log path), with no
Python traceback unless asked for. And the texts `status` and `destroy` print."""

from __future__ import annotations

import traceback

from pulumi.automation import events

from components.ssh import RemoteCommandError, failure_message
from workhub.__main__ import destroyed_message, format_status
from workhub.display import DEBUG_HINT, Display, Failure, exception_message, failure_report

HOST = "deploy@127.0.0.1:2222"
RUN_URN = ("urn:pulumi:e2e::workhub::workhub:hub:BuildChain$workhub:hub:HubImage$pulumi-python:dynamic:Resource"
           "::wbfinhub-run")
STACK_URN = "urn:pulumi:e2e::workhub::pulumi:pulumi:Stack::workhub-e2e"
HEALTH_FAILED = ("run: FAILED: wbfinhub-e2e-blue never answered /health with 200 3 time(s) in a row within 60 s "
                 "(workhub:deploy.healthTimeoutSeconds): it answered 500 for 59 s (118 times). It got no request "
                 "from clients; full log on the host: /home/deploy/.workhub/logs/wbfinhub-e2e-blue-x.log")
RUN_TAIL = ["run: starting wbfinhub-e2e-blue from wbfinhub:e2e-0123456789ab beside nothing (PORT 4092)",
            '{"msg":"wbfinhub 0.9.3 listening on 0.0.0.0:4092"}',
            "run: removing wbfinhub-e2e-blue; nothing keeps serving", HEALTH_FAILED]


def test_a_failed_deploy_names_hub_step_reason_last_lines_and_log():
    assert failure_message("wbfinhub-run", HOST, 1, RUN_TAIL).splitlines() == [
        "hub: wbfinhub",
        f"step: deploy (wbfinhub-run on {HOST}, exit code 1)",
        "reason: wbfinhub-e2e-blue never answered /health with 200 3 time(s) in a row within 60 s "
        "(workhub:deploy.healthTimeoutSeconds): it answered 500 for 59 s (118 times). It got no request from clients",
        "last log lines:",
        *(f"    {line}" for line in RUN_TAIL[:3]),
        "log on the host: /home/deploy/.workhub/logs/wbfinhub-e2e-blue-x.log",
    ]


def test_a_failed_build_keeps_its_last_lines_and_no_blank_ones():
    tail = [f"#16 {i} compiling" for i in range(30)] + [
        "", "build: attempt 1 failed (exit code 1), and not from the network: not trying again",
        "build: FAILED: the build of wbsaleshub:e2e-0123456789ab ended with status 1; full log on the host: "
        "/home/deploy/.workhub/builds/wbsaleshub-e2e-0123456789ab/log"]
    lines = failure_message("wbsaleshub-build", HOST, 1, tail).splitlines()
    assert lines[:3] == ["hub: wbsaleshub", f"step: build (wbsaleshub-build on {HOST}, exit code 1)",
                         "reason: the build of wbsaleshub:e2e-0123456789ab ended with status 1"]
    assert lines[3] == "last log lines:" and len(lines[4:-1]) == 15 and "" not in lines
    assert lines[-2] == "    build: attempt 1 failed (exit code 1), and not from the network: not trying again"
    assert lines[-1] == "log on the host: /home/deploy/.workhub/builds/wbsaleshub-e2e-0123456789ab/log"


def test_a_host_step_names_no_hub_and_a_script_without_a_reason_says_its_exit_code():
    lines = failure_message("build-host-preflight", HOST, 2, ["preflight: FAILED: only 5 MB free"]).splitlines()
    assert lines == [f"step: preflight (build-host-preflight on {HOST}, exit code 2)", "reason: only 5 MB free"]
    assert failure_message("job", HOST, 3, []).splitlines() == [f"step: job (job on {HOST}, exit code 3)",
                                                                "reason: the script ended with exit code 3"]



def test_a_volumes_step_names_its_hub_and_volume():
    lines = failure_message("wbsaleshub-volume-data", HOST, 1, ["Error response from daemon: no space left"]).splitlines()
    assert lines[:2] == ["hub: wbsaleshub", f"step: volume data (wbsaleshub-volume-data on {HOST}, exit code 1)"]


def provider_traceback(error: Exception) -> str:
    """The text the dynamic provider sends the engine for an exception: its traceback."""
    try:
        raise error
    except Exception:
        return traceback.format_exc()


def test_the_message_of_a_providers_traceback_is_its_exception_message():
    message = failure_message("wbfinhub-run", HOST, 1, RUN_TAIL)
    text = provider_traceback(RemoteCommandError(message))
    assert text.startswith("Traceback (most recent call last):")
    assert exception_message(text) == message
    assert exception_message(provider_traceback(KeyError("create"))) == "KeyError: 'create'"
    assert exception_message("an unhandled error occurred: workhub:hubs: is empty") == "workhub:hubs: is empty"
    assert exception_message("  plain text\n") == "plain text"


def event(**data) -> events.EngineEvent:
    return events.EngineEvent.from_json({"sequence": 0, "timestamp": data.pop("timestamp", 0), **data})


def diagnostic(message: str, severity: str = "info#err", urn: str | None = None) -> events.EngineEvent:
    return event(diagnosticEvent={"message": message, "color": "never", "severity": severity,
                                  **({"urn": urn} if urn else {})})


def step(key: str, op: str, timestamp: int) -> events.EngineEvent:
    metadata = {"op": op, "urn": RUN_URN, "type": "pulumi-python:dynamic:Resource",
                "provider": "urn:pulumi:e2e::workhub::pulumi:providers:pulumi-python::default::1"}
    return event(timestamp=timestamp, **{key: {"metadata": metadata}})


def failed_update() -> tuple[Display, list[str]]:
    """An update whose deploy of wbfinhub failed, as the engine reports it."""
    said: list[str] = []
    display = Display(said.append)
    message = failure_message("wbfinhub-run", HOST, 1, RUN_TAIL)
    for one in [
        diagnostic("registering resource: ty=pulumi:pulumi:Stack\n", "debug"),
        diagnostic("wbfinhub: Dockerfile:26 declares VOLUME /app/data\n", "warning"),
        step("resourcePreEvent", "create", 10),
        *(diagnostic(f"wbfinhub-run: {line}\n\n") for line in RUN_TAIL),
        diagnostic(provider_traceback(RemoteCommandError(message)), "error", RUN_URN),
        step("resOutputsEvent", "create", 19),
        diagnostic("update failed\n", "error"),
        diagnostic("Resource monitor has terminated, shutting down\n", "error"),
        event(summaryEvent={"maybeCorrupt": False, "durationSeconds": 48, "resourceChanges": {"create": 8},
                            "PolicyPacks": {}}),
    ]:
        display(one)
    return display, said


def test_the_display_streams_the_scripts_lines_and_keeps_the_failure_for_the_end():
    display, said = failed_update()
    assert said == ["warning: wbfinhub: Dockerfile:26 declares VOLUME /app/data",
                    "+ wbfinhub-run: creating",
                    *(f"wbfinhub-run: {line}" for line in RUN_TAIL[:3]),
                    "+ wbfinhub-run: created (9 s)"]
    assert display.summary is not None and display.summary.resource_changes == {"create": 8}


def test_the_failure_is_said_once_in_workhubs_words_with_no_traceback():
    display, said = failed_update()
    report = failure_report("up", "e2e", display.failures)
    assert report == "\n".join(["workhub: up of stack 'e2e' failed",
                                *(f"  {line}" for line in failure_message("wbfinhub-run", HOST, 1, RUN_TAIL)
                                  .splitlines())])
    whole = "\n".join([*said, report])
    assert "Traceback" not in whole and "update failed" not in whole
    assert whole.count("it answered 500 for 59 s (118 times)") == 1


def test_with_debug_the_failure_shows_the_providers_traceback():
    display, _ = failed_update()
    report = failure_report("up", "e2e", display.failures, debug=True)
    assert report.count("Traceback (most recent call last):") == 1 and DEBUG_HINT not in report
    assert 'raise error' in report and "hub: wbfinhub" in report


def test_an_unforeseen_error_names_its_type_and_says_how_to_see_its_traceback():
    report = failure_report("up", "e2e", [Failure("wbfinhub-build", provider_traceback(KeyError("create")))])
    assert report.splitlines() == ["workhub: up of stack 'e2e' failed", "  step: wbfinhub-build",
                                   "  reason: KeyError: 'create'", f"  {DEBUG_HINT}"]


def test_an_error_that_is_not_a_scripts_names_its_step_and_the_engines_own_stays_when_alone():
    report = failure_report("up", "e2e", [Failure("wbfinhub-build", "cannot connect to deploy@127.0.0.1:2222")])
    assert report.splitlines() == ["workhub: up of stack 'e2e' failed", "  step: wbfinhub-build",
                                   "  reason: cannot connect to deploy@127.0.0.1:2222"]
    alone = failure_report("destroy", "e2e", [Failure("", "destroy failed\n")])
    assert alone.splitlines() == ["workhub: destroy of stack 'e2e' failed", "  destroy failed"]


def test_a_mandatory_policy_violation_is_a_failure_and_an_advisory_one_a_warning():
    said: list[str] = []
    display = Display(said.append)
    for level in ("mandatory", "advisory"):
        display(event(policyEvent={"message": f"{level} message\n", "color": "never", "policyName": "p",
                                   "policyPackName": "workhub-guardrails", "policyPackVersion": "1",
                                   "policyPackVersionTag": "1", "enforcementLevel": level, "resourceUrn": RUN_URN}))
    assert display.failures == [Failure("wbfinhub-run", "policy workhub-guardrails/p: mandatory message")]
    assert said == ["warning: wbfinhub-run: policy workhub-guardrails/p: advisory message"]


ROW = {"hub": "wbfinhub", "container": "wbfinhub-e2e-blue", "image": "wbfinhub:e2e-aaaaaaaaaaaa",
       "since": "2026-01-01T00:00:00", "health": "ok", "proxy": "running", "build": "succeeded", "attempts": "1",
       "log": "/home/deploy/.workhub/builds/wbfinhub-e2e-aaaaaaaaaaaa/log"}


def test_status_shows_the_build_of_the_running_image_and_a_later_failed_one_apart():
    later = {**ROW, "last_attempt": "failed", "last_image": "wbfinhub:e2e-bbbbbbbbbbbb",
             "last_log": "/home/deploy/.workhub/builds/wbfinhub-e2e-bbbbbbbbbbbb/log"}
    header, row = format_status([later]).splitlines()
    assert header.split() == ["HUB", "CONTAINER", "IMAGE", "SINCE", "HEALTH", "PROXY", "BUILD", "ATTEMPTS", "LOG",
                              "LAST_ATTEMPT"]
    assert row.split()[6:9] == ["succeeded", "1", ROW["log"]]
    assert row.endswith("failed: wbfinhub:e2e-bbbbbbbbbbbb (log /home/deploy/.workhub/builds/wbfinhub-e2e-bbbbbbbbbbbb/log)")
    assert format_status([ROW]).splitlines()[1].endswith(f"{ROW['log']}  -")


def test_destroy_says_what_it_keeps_and_why():
    kept = destroyed_message("e2e", purged=False)
    assert "named volumes" in kept and "--purge-data" in kept and "npm cache mounts" in kept
    assert "named volumes" not in destroyed_message("e2e", purged=True)
