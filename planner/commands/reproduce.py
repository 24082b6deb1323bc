"""``planner reproduce {eq6,miki,haarnoja,figure2,all}``: the paper's numbers beside the computed ones."""

import argparse
import json

from planner.reproduce import GROUPS, eq6_differences, evaluate, figure2_rows
from planner.table import render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce the paper's worked estimates (Eq. 6, Miki, Haarnoja, Figure 2)")
    p.add_argument("target", choices=(*GROUPS, "all"), help="which published numbers to check")
    p.add_argument("--json", action="store_true",
                   help="print {claims: [{source, quantity, paper, computed, unit, verdict, ...}], figure2: [per-env "
                        "rows], eq6_differences: [...]} instead of tables")
    p.set_defaults(func=run)


def _num(x: float, unit: str) -> str:
    if unit == "bits":
        return f"{x:.0f}"
    return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.2f}"


def run(args: argparse.Namespace) -> int:
    groups = GROUPS if args.target == "all" else (args.target,)
    results = evaluate(groups)
    if args.json:
        out = {"claims": [r.as_dict() for r in results]}
        if "eq6" in groups:
            out["eq6_differences"] = [{"decimals": m, "clamp": b, "eq6_bits": e, "exact_bits": x}
                                      for m, b, e, x in eq6_differences()]
        if "figure2" in groups:
            out["figure2"] = [{"algo": algo, "env": env, "obs_dim": o, "action_dim": a, "baseline_bytes": base,
                               "quantized_bytes": quant, "reduction": ratio}
                              for algo, env, o, a, base, quant, ratio in figure2_rows()]
        print(json.dumps(out, indent=2))
    else:
        rel = {"=": "", ">": "> ", "<": "< ", "~": "~ ", "slip": ""}
        rows = [[r.claim.source, r.claim.quantity, f"{rel[r.claim.relation]}{r.claim.paper:g}",
                 _num(r.computed, r.claim.unit), r.claim.unit, f"{r.deviation:+.3g}", r.verdict, r.claim.note]
                for r in results]
        print(render(rows, ["source", "quantity", "paper", "computed", "unit", "deviation", "verdict", "note"]))
        print("\nMB = 10^6 B, GB = 10^9 B. ok: the computed value rounds or truncates to the paper's figure (or meets "
              "its bound; ~ figures within 5 %); near: within one unit of the last stated digit (the note says why).")
        if "eq6" in groups:
            diffs = [[str(m), f"{b:g}", str(e), str(x), "undercounts" if e < x else "overcounts"]
                     for m, b, e, x in eq6_differences()]
            print("\nWhere Eq. 6 and the exact level count ceil(log2(2*b*10^m + 1)) differ:")
            print(render(diffs, ["m", "b", "Eq. 6 bits", "exact bits", "Eq. 6"]))
        if "figure2" in groups:
            rows = [[algo.upper(), env, str(o), str(a), f"{base / 1e6:,.3f}", f"{quant / 1e6:,.3f}", f"{ratio:.3f}x"]
                    for algo, env, o, a, base, quant, ratio in figure2_rows()]
            print("\nFigure 2, per environment (layout 'figure2': observations at 64 bits stored once vs 12 bits PPO / "
                  "15 bits SAC, actions float32, SAC reward + done, PPO seven 4-byte scalars per step, "
                  "float32 parameters, no optimizer state):")
            print(render(rows, ["algo", "env", "obs", "act", "baseline MB", "quantized MB", "reduction"]))
    return 1 if any(r.verdict == "MISMATCH" for r in results) else 0
