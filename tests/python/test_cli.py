"""The `skiff` command line: `skiff admin topics ...` (human and JSON output,
exit codes), the HTTP endpoints, and configuration errors of `skiff serve`."""
import json
import os
import re
import subprocess

from conftest import free_port, skiff_bin
import clients


def admin(broker, *args, output=None):
    cmd = [skiff_bin(), "admin", "--bootstrap-server", broker.bootstrap, "--timeout", "10s"]
    if output:
        cmd += ["--output", output]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")}
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, env=env)


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout


def test_topics_lifecycle_human_and_json(broker, topic_name):
    out = ok(admin(broker, "topics", "create", topic_name, "--partitions", "2",
                   "--config", "retention.ms=60000"))
    assert f"Created topic {topic_name} with 2 partitions" in out

    listed = json.loads(ok(admin(broker, "topics", "list", output="json")))
    assert topic_name in listed
    assert topic_name in ok(admin(broker, "topics", "list")).split()

    [view] = json.loads(ok(admin(broker, "topics", "describe", topic_name, output="json")))
    assert view["topic"] == topic_name
    assert [p["partition"] for p in view["partitions"]] == [0, 1]
    assert all(p["leader"] == 1 and p["error"] is None for p in view["partitions"])
    assert view["configs"].get("retention.ms") == "60000"
    human = ok(admin(broker, "topics", "describe", topic_name))
    assert f"Topic: {topic_name}" in human and "partitions: 2" in human
    assert "retention.ms=60000" in human

    r = json.loads(ok(admin(broker, "topics", "alter-config", topic_name,
                            "--set", "retention.bytes=1048576", "--delete", "retention.ms",
                            output="json")))
    assert r["topic"] == topic_name
    [view] = json.loads(ok(admin(broker, "topics", "describe", topic_name, output="json")))
    assert view["configs"].get("retention.bytes") == "1048576"
    assert "retention.ms" not in view["configs"]

    assert "now has 5 partitions" in ok(admin(broker, "topics", "add-partitions", topic_name,
                                              "--total", "5"))
    [view] = json.loads(ok(admin(broker, "topics", "describe", topic_name, output="json")))
    assert len(view["partitions"]) == 5

    r = json.loads(ok(admin(broker, "topics", "delete", topic_name, output="json")))
    assert r == {"deleted": [topic_name]}
    assert topic_name not in json.loads(ok(admin(broker, "topics", "list", output="json")))


def test_admin_exit_codes(broker, topic_name):
    ok(admin(broker, "topics", "create", topic_name, "--partitions", "1"))
    # 1: the broker answered with an error.
    r = admin(broker, "topics", "create", topic_name)
    assert r.returncode == 1 and "TopicAlreadyExists" in r.stderr, r
    r = admin(broker, "topics", "alter-config", topic_name, "--set", "cleanup.policy=bogus")
    assert r.returncode == 1 and "InvalidConfig" in r.stderr, r
    r = admin(broker, "topics", "add-partitions", topic_name, "--total", "1")
    assert r.returncode == 1, r
    r = admin(broker, "topics", "delete", "no-such-topic-" + topic_name)
    assert r.returncode == 1 and "UnknownTopicOrPartition" in r.stderr, r
    # 2: bad arguments (ours and clap's).
    r = admin(broker, "topics", "create", "x" + topic_name, "--config", "novalue")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr, r
    r = admin(broker, "topics", "frobnicate")
    assert r.returncode == 2, r
    # 3: nobody listening.
    dead = type("B", (), {"bootstrap": f"127.0.0.1:{free_port()}"})()
    r = admin(dead, "topics", "list")
    assert r.returncode == 3, r


def scrape(broker):
    status, text = broker.http_get("/metrics")
    assert status == 200
    return text


def metric(text, name, **labels):
    """The value of one sample, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    m = re.search(r"^" + pat + r"$", text, re.M)
    return float(m.group(1)) if m else None


def test_http_endpoints_and_metrics_move(broker, topic_name):
    assert broker.http_get("/healthz") == (200, "ok\n")
    assert broker.http_get("/readyz") == (200, "ready\n")
    before = scrape(broker)
    for name in ["skiff_wal_unuploaded_bytes", "skiff_upload_lag_seconds", "skiff_connections"]:
        assert re.search(r"^" + name + r" ", before, re.M), name
    produced_before = metric(before, "skiff_requests_total", api="Produce") or 0

    clients.create_topic(broker, topic_name)
    p = clients.producer(broker)
    clients.produce_all(p, topic_name, [(b"k", b"v" * 100, None, None)] * 20)
    got = clients.consume(broker, topic_name, 20)
    assert len(got) == 20

    after = scrape(broker)
    assert metric(after, "skiff_requests_total", api="Produce") > produced_before
    assert metric(after, "skiff_requests_total", api="Fetch") > 0
    assert metric(after, "skiff_topic_bytes_in_total", topic=topic_name) >= 2000
    assert metric(after, "skiff_topic_messages_in_total", topic=topic_name) == 20
    assert metric(after, "skiff_topic_bytes_out_total", topic=topic_name) >= 2000
    assert metric(after, "skiff_request_duration_seconds_count", api="Produce") > 0
    assert metric(after, "skiff_connections_accepted_total") >= 1


def serve(*args, timeout=30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")}
    return subprocess.run([skiff_bin(), "serve", "--listen", f"127.0.0.1:{free_port()}",
                           "--http-listen", "", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_configuration_errors_exit_2_naming_the_key(data_dir, tmp_path):
    r = serve("--data-dir", data_dir, "--set", "num_partitions=0")
    assert r.returncode == 2, r
    assert "num_partitions" in r.stderr and "configuration error" in r.stderr

    r = serve("--data-dir", data_dir, "--set", "no_such_key=1")
    assert r.returncode == 2 and "no_such_key" in r.stderr, r

    r = serve("--data-dir", data_dir, "--set", "num_partitions=many")
    assert r.returncode == 2 and "num_partitions" in r.stderr, r

    bad = tmp_path / "bad.toml"
    bad.write_text("listen = \n[storage\n")
    r = serve("--data-dir", data_dir, "--config", str(bad))
    assert r.returncode == 2 and "bad.toml" in r.stderr, r

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[storage]\nno_such_storage_key = 3\n")
    r = serve("--data-dir", data_dir, "--config", str(unknown))
    assert r.returncode == 2 and "no_such_storage_key" in r.stderr, r

    r = serve("--data-dir", data_dir, "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "does not exist" in r.stderr, r
