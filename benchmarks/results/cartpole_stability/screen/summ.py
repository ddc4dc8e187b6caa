import json
import collections
import statistics
import glob
import os
import sys

rows = collections.defaultdict(list)
for f in glob.glob(os.path.join(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)), "*.jsonl")):
    for line in open(f):
        d = json.loads(line)
        c = d["curve"]
        stays = None
        for i in range(len(c)):
            if all(v >= 475 for t, v in c[i:]):
                stays = c[i][0]
                break
        first = next((t for t, v in c if v >= 475), None)
        falls = False
        reached = False
        for _t, v in c:
            if v >= 475:
                reached = True
            elif reached and v < 400:
                falls = True
        rows[d["name"]].append((d["seed"], d["final"], first, stays, falls))
for k, v in sorted(rows.items()):
    v.sort()
    print(
        k,
        len(v),
        "finals<500:",
        sum(f < 500 for _, f, _, _, _ in v),
        "med first",
        statistics.median([x[2] or 1e6 for x in v]),
        "med stays",
        statistics.median([x[3] or 1e6 for x in v]),
        "falls",
        sum(x[4] for x in v),
    )
    print("   ", v)
