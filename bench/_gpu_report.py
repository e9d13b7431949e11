"""The GPU benchmark's report: the markdown summary (``gpu.md``) of a run's result.

It owns :func:`summary`: the environment line, the training table (both training sections), the
continued-training and torchrun lines, the sampling table with the target check, and the errors and
skipped sections; a failed row shows its error instead of numbers.
"""

from __future__ import annotations

from typing import Any


def _number(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary(result: dict) -> str:
    """A markdown summary of a :func:`run` result (failed rows show their error)."""
    sections = result["sections"]
    lines = [f"# `{result['command']}`", "", f"_{result['note']}_", ""]
    env = sections.get("environment", {})
    lines += [f"torch {env.get('torch')}, GPU {env.get('gpu', 'none')}, NCCL {env.get('nccl_version', 'n/a')}", ""]
    rows = sections.get("training", []) + sections.get("training_compiled", [])
    if rows:
        lines += ["## Training (trainer steps/s)", "",
                  "| case | network | batch | bf16 | compile | steps/s | samples/s | peak GiB |", "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            if "error" in row:
                lines.append(f"| {row['case']} | | {row['batch']} | | | failed: {row['error'][:120]} | | |")
                continue
            lines.append(f"| {row['case']} | {row['network']} | {row['batch']} | {row['bf16']} | {row['compile']} | "
                         f"{row['steps_per_s']} | {row['samples_per_s']} | {row['peak_memory_gib']} |")
        lines.append("")
    if "continued_training" in sections:
        c = sections["continued_training"]
        lines += ["## Continued training from the shipped state", "",
                  f"step {c['start_step']} -> {c['final_step']} (checkpoint at {c['checkpoint_step_after_first_call']}, "
                  f"resumed), batch {c['batch']}, bf16 {c['bf16']}: loss {_number(c['loss_second_call'])}, val loss "
                  f"{_number(c['val_loss'])}; export read with weights_only=True, equals the last EMA: "
                  f"{c['export_equals_last_ema']}, samples decoded: {c['export_samples_decoded']}", ""]
    if "torchrun" in sections:
        t = sections["torchrun"]
        lines += ["## torchrun, 1 process", "", f"`{t['command']}`", "",
                  f"exit {t['returncode']} in {t['seconds']} s, backend {t['backend_expected']}, "
                  f"NCCL line: {t['nccl_version_line']}, steps logged {t['steps_logged']}", ""]
    if "sampling" in sections:
        s = sections["sampling"]
        lines += ["## Sampling (shipped model)", "",
                  "| sampler | steps | batch | bf16 autocast | structures/s | with decoding | peak GiB |", "|---|---|---|---|---|---|---|"]
        for row in s["cases"]:
            speed = row.get("structures_per_s", f"failed: {row.get('error', '')[:120]}")
            lines.append(f"| {row['sampler']} | {row['steps']} | {row['batch']} | {row['bf16_autocast']} | {speed} | "
                         f"{row.get('structures_per_s_with_decode', '')} | {row.get('peak_memory_gib', '')} |")
        network = ", ".join(f"batch {n['batch']}: {n.get('structures_per_s_at_100_calls', 'failed')}/s" for n in s["network_only"])
        lines += ["", f"Default sampler ({s['default_sampler']}): best {s['best_default_structures_per_s']} structures/s; "
                  f"target {s['target_structures_per_s']}: met = {s['meets_target']}. The network calls alone, at the "
                  f"default sampler's 100 calls per structure: {network}", ""]
    for name, error in result["errors"].items():
        lines.append(f"- **{name} failed**: {error}")
    for skipped in result["skipped"]:
        lines.append(f"- skipped {skipped}")
    return "\n".join(lines).rstrip() + "\n"
