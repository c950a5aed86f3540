"""botmesh-client prints what its --help promises, refuses what the
clients and the HTTP API refuse, and never overwrites a key pair.

Real redis-server and broker, and a Python client worker in this process.

- submit prints {"jobId": ...} (with the broker's duplicate and position),
  not the protocol's req; retry and redeliver print the job's id, without
  req or the SUBMIT-only duplicate; stats and ping have no req either.
- list --state takes the states GET /jobs takes, BullMQ's names too
  (waiting: queued), and refuses any other with exit 2 naming them, as
  the clients (invalid_state) and GET /jobs (400) do.
- list --webhook-state takes the webhook states GET /jobs?webhook= takes
  (no webhook manager runs here: a finished job's webhook stays pending)
  and refuses any other with exit 2 naming the flag and the states; the
  Python client's list(webhook=) the same (invalid_webhook).
- keygen DIR NAME refuses (exit 1, naming the file) to overwrite an
  existing pair, and replaces it with --force.
"""
import os

from e2elib import harness, botmesh, cli, wait_worker
from e2elib import cli_run as run
from harness import check


def main():
    with harness.Stack("clients-cli-output") as s:
        s.redis()
        s.broker(env={"MAX_CLIOUT_BOTS": "1", "MAX_CLIHOLD_BOTS": "1"})   # clihold: no worker
        w = botmesh.Worker(["cliout"], lambda payload, job: {"echo": payload}, credit=1,
                           endpoint=s.endpoint, name="py-cli-out").start()
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-cli-out")

        sub = cli(s, "submit", "cliout", '{"n":1}', "--webhook", "http://127.0.0.1:9/hook")
        check(isinstance(sub.get("jobId"), str) and "req" not in sub, "submit prints the jobId, no req", sub)
        check(set(sub) <= {"jobId", "duplicate", "position"}, "and only what ACCEPTED says of the job", sub)
        check(c.wait(sub["jobId"], timeout=20)["state"] == "completed", "the job completed")
        for what in ("stats", "ping"):
            check("req" not in cli(s, what), "%s prints no req" % what)
        again = cli(s, "redeliver", sub["jobId"])
        check(again == {"jobId": sub["jobId"]}, "redeliver prints the job's id alone", again)

        held = cli(s, "submit", "clihold", "{}")["jobId"]
        cli(s, "cancel", held)
        again = cli(s, "retry", held)
        check(again.get("jobId") == held and "req" not in again and "duplicate" not in again,
              "retry prints the job's id (and its place), no req, no duplicate", again)

        listed = cli(s, "list", "--state", "completed", "--type", "cliout")
        check([j["jobId"] for j in listed["jobs"]] == [sub["jobId"]] and set(listed) == {"jobs"},
              "list --state completed: the completed job, no req", listed)
        listed = cli(s, "list", "--state", "waiting", "--type", "clihold")
        check([j["jobId"] for j in listed["jobs"]] == [held], "list --state waiting: BullMQ's name of queued",
              listed)
        out = run(s, "list", "--state", "bogus")
        check(out.returncode == 2 and "--state must be one of: queued" in out.stderr and out.stdout == "",
              "list --state bogus: exit 2 naming the states, nothing on stdout", out.returncode, out.stdout,
              out.stderr)

        # --- list --webhook-state: the job with a webhook, not the one without --------
        listed = cli(s, "list", "--webhook-state", "pending")
        check([j["jobId"] for j in listed["jobs"]] == [sub["jobId"]],
              "list --webhook-state pending: the job with a webhook (pending: no manager runs), not clihold's",
              listed)
        listed = cli(s, "list", "--webhook-state", "pending", "--state", "completed", "--type", "cliout")
        check([j["jobId"] for j in listed["jobs"]] == [sub["jobId"]], "with --state and --type too", listed)
        for other in ("retrying", "delivered", "failed"):
            check(cli(s, "list", "--webhook-state", other)["jobs"] == [], "list --webhook-state %s: none" % other)
        check(cli(s, "list", "--webhook-state", "pending", "--type", "clihold")["jobs"] == [],
              "list --webhook-state pending --type clihold: none")
        for bad in (["Pending"], ["gaveup"], []):
            out = run(s, "list", "--webhook-state", *bad)
            check(out.returncode == 2 and "--webhook-state must be one of: pending, retrying, delivered, failed"
                  in out.stderr and out.stdout == "",
                  "list --webhook-state %s: exit 2 naming the flag and the states" % (bad or ["(no value)"])[0],
                  out.returncode, out.stdout, out.stderr)
        check([j["jobId"] for j in c.list(webhook="pending")] == [sub["jobId"]] and c.list(webhook="failed") == [],
              "python list(webhook='pending'): the same job; webhook='failed': none")
        for bad in ("Pending", "gaveup", 3):
            try:
                c.list(webhook=bad)
                check(False, "python list(webhook=%r) raises" % bad)
            except botmesh.Rejected as exc:
                check(exc.code == "invalid_webhook" and "pending, retrying, delivered, failed" in exc.message,
                      "python list(webhook=%r): invalid_webhook naming the states" % bad, exc.code, exc.message)

        out = run(s, "--help")
        check("refuses (exit 1) when either exists, unless --force" in out.stdout
              and "those\n" in out.stdout and "holds in memory" in out.stdout
              and "[--webhook-state W]" in out.stdout and "pending, retrying, delivered,\n" in out.stdout,
              "--help says keygen refuses to overwrite, and what list lists (--webhook-state too)", out.stdout)

        keys = os.path.join(s.dir, "keys")
        check(run(s, "keygen", keys, "me").returncode == 0, "keygen writes a pair")
        with open(os.path.join(keys, "me.key_secret")) as f:
            secret = f.read()
        for left in ("me.key", "me.key_secret"):
            if left == "me.key_secret":
                os.unlink(os.path.join(keys, "me.key"))        # only the secret left
            out = run(s, "keygen", keys, "me")
            check(out.returncode == 1 and os.path.join(keys, left) in out.stderr and "--force" in out.stderr,
                  "keygen over an existing %s: exit 1 naming it and --force" % left, out.returncode, out.stderr)
            with open(os.path.join(keys, "me.key_secret")) as f:
                check(f.read() == secret, "the secret key is untouched")
        out = run(s, "keygen", keys, "me", "--force")
        with open(os.path.join(keys, "me.key_secret")) as f:
            check(out.returncode == 0 and f.read() != secret, "keygen --force replaces the pair", out.stderr)
        c.close()
        check(w.stop(timeout=10), "the worker stops")


if __name__ == "__main__":
    harness.main(main)
