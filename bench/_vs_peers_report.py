"""The report of ``bench/vs_peers.py``: its markdown table and its PNG chart (no measuring)."""

from __future__ import annotations

import io
from pathlib import Path

import _common as C


def markdown(data: dict) -> str:
    m, env = data["machine"], data["env"]
    lines = ["## txdsl vs peers (same weights; medians of interleaved runs)", "",
             f"{C.env_line(env)}. Machine limits measured first: GEMM "
             + ", ".join(f"{k} {v} GFLOP/s" for k, v in m["gemm_gflops"].items())
             + f" (n={m['gemm_n']}); copy {m['copy_gbps']} GB/s. Run took "
             f"{data['duration_s'] / 60:.1f} min"
             + (", compile caches " + ("cold (fresh directories)"
                                       if data["caches"].startswith("cold") else
                                       "the machine's own") if data.get("caches") else "")
             + ".", "",
             "Cell: ratio vs HF eager / HF generate (> 1 faster), then tokens/s and the "
             "fraction of the limit (forward: of the GEMM rate; decode: of the copy "
             "bandwidth). Outputs were compared first: max |diff| (forward) or greedy "
             "token agreement (decode) against HF, in the JSON. n = timed repetitions "
             f"(adaptive: each variant's within {data.get('variant_seconds', '?')} s; at "
             "least one, after an untimed first call that compiles).", ""]
    if data.get("skipped_cells"):
        lines += [f"Skipped (over the {data.get('budget_minutes')}-minute budget): "
                  + ", ".join(data["skipped_cells"]) + ".", ""]
    for kind in ("forward", "decode"):
        rows = [c for c in data["cells"] if c["kind"] == kind]
        if not rows:
            continue
        names = list(dict.fromkeys(n for c in rows for n in c["variants"]))
        table = []
        for c in rows:
            cells = [f"{c['family']} {c['cell']} {c['dtype']}"]
            for n in names:
                v = c["variants"].get(n)
                if v is None:
                    cells.append("")
                elif "unavailable" in v:
                    cells.append(v["unavailable"][:60])
                else:
                    frac = v.get("fraction_of_gemm", v.get("fraction_of_bandwidth"))
                    short = (f"; {v['new_tokens']} tok" if v.get("new_tokens") is not None
                             and c["kind"] == "decode" and "measured on" in v.get("note", "")
                             else "")
                    cells.append(f"{v['ratio_vs_hf']:.2f}x ({C.fmt_rate(v['tokens_per_s'])}"
                                 + (f"; {100 * frac:.0f}%" if frac is not None else "")
                                 + f"; n={v.get('reps', v.get('n', '?'))}{short})")
            cells.append(f"{c['best_txdsl_vs_fastest_peer']:.2f}x ({c['fastest_peer']})"
                         if "best_txdsl_vs_fastest_peer" in c else "-")
            table.append(cells)
        lines += [f"### {kind}", "", C.md_table(["cell"] + names + ["best txdsl / fastest peer"],
                                                table), ""]
    return "\n".join(lines)


def plot(data: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = data["cells"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    for ax, kind in zip(axes, ("forward", "decode")):
        sub = [c for c in rows if c["kind"] == kind]
        names = list(dict.fromkeys(n for c in sub for n in c["variants"]
                                   if "ratio_vs_hf" in c["variants"][n]))
        width = 0.8 / max(len(names), 1)
        for i, n in enumerate(names):
            ax.bar([j + i * width for j in range(len(sub))],
                   [c["variants"].get(n, {}).get("ratio_vs_hf", 0) for c in sub], width,
                   label=n)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sub))],
                      [f"{c['family']} {c['cell']}\n{c['dtype']}" for c in sub], fontsize=7)
        ax.set_yscale("log")  # ratios: 2x and 0.5x equally far from 1
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"{kind}: speed vs HF (> 1 faster)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    C.write_bytes_atomic(path, buf.getvalue())
    return path


