#!/usr/bin/env python3
"""Gate an Autobahn|Testsuite fuzzingclient run: summarize reports/index.json and fail on bad cases.

Used by scripts/autobahn (see there for how the run is produced); also usable on its own:

    python3 scripts/autobahn_check.py target/autobahn-report/reports [--expected-count N]
        [--allow-non-strict] [--max-detail N]

A case passes when its `behavior` is OK or INFORMATIONAL and its `behaviorClose` is OK or
INFORMATIONAL. UNIMPLEMENTED passes only for 12.* / 13.* (permessage-deflate, which the server
declines without --deflate; those groups are normally excluded from that run), and not even there
with AUTOBAHN_REQUIRE_DEFLATE=1 (the run against socketbox --deflate). NON-STRICT fails
unless --allow-non-strict is given. For every failing case the description, expectation,
outcome and close details are printed from the per-case JSON report, so a developer can act.

Exit status: 0 all cases pass, 1 some case fails, 2 the report is missing, unreadable or
incomplete (fewer cases than --expected-count).
Standard library only.
"""

import argparse
import html
import json
import os
import re
import signal
import sys

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
CLOSE_BEHAVIORS = ["OK", "INFORMATIONAL", "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT", "FAILED"]

# Autobahn|Testsuite case categories (autobahntestsuite/case/__init__.py).
GROUP_NAMES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "8": "Misc",
    "9": "Limits/Performance",
    "10": "Misc (auto-fragmentation)",
    "12": "permessage-deflate (payloads)",
    "13": "permessage-deflate (parameters)",
}
DEFLATE_GROUPS = ("12", "13")
# AUTOBAHN_REQUIRE_DEFLATE=1: the server under test speaks permessage-deflate
# (socketbox --deflate), so a compression case it left UNIMPLEMENTED fails.
REQUIRE_DEFLATE = os.environ.get("AUTOBAHN_REQUIRE_DEFLATE") == "1"


def case_key(case_id):
    """Numeric sort key for ids such as '6.10.2'."""
    return [int(p) if p.isdigit() else 0 for p in case_id.split(".")]


def plain(text, limit):
    """HTML description -> one readable line, truncated."""
    text = re.sub(r"<br\s*/?>", " ", str(text))
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verdict(case_id, entry, allow_non_strict):
    """Return None when the case passes, else a short reason."""
    group = case_id.split(".")[0]
    behavior = entry.get("behavior")
    close = entry.get("behaviorClose")
    ok = {"OK", "INFORMATIONAL"} | ({"NON-STRICT"} if allow_non_strict else set())
    if behavior == "UNIMPLEMENTED" and group in DEFLATE_GROUPS and not REQUIRE_DEFLATE:
        return None
    reasons = []
    if behavior not in ok:
        reasons.append("behavior=%s" % behavior)
    if close not in ("OK", "INFORMATIONAL"):
        reasons.append("behaviorClose=%s" % close)
    return ", ".join(reasons) or None


def table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def load_detail(report_dir, entry):
    name = entry.get("reportfile")
    if not name:
        return {}
    try:
        with open(os.path.join(report_dir, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report_dir", help="directory holding index.json (the spec's outdir)")
    ap.add_argument("--expected-count", type=int, default=0,
                    help="number of cases the run was asked to execute (per agent)")
    ap.add_argument("--allow-non-strict", action="store_true",
                    help="accept NON-STRICT (a SHOULD not followed) as passing")
    ap.add_argument("--max-detail", type=int, default=60,
                    help="print full details for at most this many failing cases")
    args = ap.parse_args(argv)

    index_path = os.path.join(args.report_dir, "index.json")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("autobahn_check: cannot read %s: %s" % (index_path, e), file=sys.stderr)
        return 2
    if not isinstance(index, dict) or not index:
        print("autobahn_check: %s holds no results" % index_path, file=sys.stderr)
        return 2

    status = 0
    for agent in sorted(index):
        cases = index[agent]
        ids = sorted(cases, key=case_key)
        print("Autobahn|Testsuite fuzzingclient results for agent %r: %d cases" % (agent, len(ids)))
        print()

        # per behavior and per close behavior
        counts = {b: 0 for b in BEHAVIORS}
        close_counts = {b: 0 for b in CLOSE_BEHAVIORS}
        for cid in ids:
            b, c = cases[cid].get("behavior"), cases[cid].get("behaviorClose")
            counts[b] = counts.get(b, 0) + 1
            close_counts[c] = close_counts.get(c, 0) + 1
        print(table(["behavior", "cases"], [[b, n] for b, n in counts.items()]))
        print()
        print(table(["behaviorClose", "cases"], [[b, n] for b, n in close_counts.items() if n or b in ("OK", "FAILED")]))
        print()

        # per case group
        groups = {}
        for cid in ids:
            groups.setdefault(cid.split(".")[0], []).append(cid)
        cols = [b for b in counts if counts[b] or b in BEHAVIORS]
        rows = []
        for g in sorted(groups, key=int):
            row = ["%s %s" % (g, GROUP_NAMES.get(g, ""))]
            row += [sum(1 for c in groups[g] if cases[c].get("behavior") == b) for b in cols]
            row += [sum(1 for c in groups[g] if cases[c].get("behaviorClose") != "OK"
                        and cases[c].get("behaviorClose") != "INFORMATIONAL"), len(groups[g])]
            rows.append(row)
        print(table(["group"] + cols + ["close!=OK", "total"], rows))
        print()

        failing = [(cid, verdict(cid, cases[cid], args.allow_non_strict)) for cid in ids]
        failing = [(cid, why) for cid, why in failing if why]
        if failing:
            status = 1
            print("FAILING CASES (%d): %s" % (len(failing), " ".join(cid for cid, _ in failing)))
            print()
            for n, (cid, why) in enumerate(failing):
                entry = cases[cid]
                if n >= args.max_detail:
                    print("... %d more failing cases not detailed (see %s)" % (len(failing) - n, args.report_dir))
                    break
                d = load_detail(args.report_dir, entry)
                print("Case %s: %s" % (cid, why))
                print("  description: %s" % plain(d.get("description", "?"), 300))
                print("  expectation: %s" % plain(d.get("expectation", "?"), 300))
                print("  result:      %s" % plain(d.get("result", "?"), 300))
                print("  close:       %s (remote close code %s, reason %r)" % (
                    plain(d.get("resultClose", "?"), 200), entry.get("remoteCloseCode"),
                    plain(d.get("remoteCloseReason") or "", 100)))
                if d.get("expected") is not None:
                    print("  expected:    %s" % plain(json.dumps(d.get("expected")), 300))
                    print("  received:    %s" % plain(json.dumps(d.get("received")), 300))
                print("  report:      %s" % os.path.join(args.report_dir, entry.get("reportfile", "?").replace(".json", ".html")))
                print()
        else:
            print("All %d cases passed (OK/INFORMATIONAL%s)." % (len(ids), ", NON-STRICT allowed" if args.allow_non_strict else ""))

        if args.expected_count and len(ids) < args.expected_count:
            print("autobahn_check: only %d of %d cases have results (run aborted or timed out?)"
                  % (len(ids), args.expected_count), file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head/less
    sys.exit(main())
