"""``ase-denoise models`` (the zoo) and ``ase-denoise demo``.

Commands import the library inside their functions: ``ase-denoise --help`` and ``ase-denoise models list``
must not pay for importing torch and MACE (start-up cost, seconds)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .common import command, training_progress


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="LJ argon end to end: data, training, force recovery, MD, RDF")
    p.add_argument("--output", default="demo_output", help="directory for data, model and plots")
    p.add_argument("--minutes", type=float, default=7.0, help="training budget (default 7)")
    p.add_argument("--md-steps", type=int, default=4000, help="Langevin steps of 10 fs (default 4000)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (~1 min)")

    p = sub.add_parser("models", help="the model zoo: list, show a model card, verify checksums")
    p.add_argument("--models-dir", default=None,
                   help="zoo directory (default: $ASE_DENOISE_MODELS_DIR or the shipped models)")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="names, sizes and summaries of the shipped models")
    q = msub.add_parser("show", help="registry entry and model card of one zoo model, or the card of a model file")
    q.add_argument("name", help="a zoo name or a model file (.safetensors)")
    msub.add_parser("verify", help="check every model's sha256 and that it loads (exit 1 if one fails)")


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    summary = run_demo(args.output, minutes=args.minutes, md_steps=args.md_steps, quick=args.quick,
                       progress=training_progress())
    print("\n=== ase_denoise demo: Lennard-Jones argon, 94.4 K ===")
    for key, value in summary.items():
        print(f"{key:>28}: {value}")
    return 0


@command("models")
def cmd_models(args: argparse.Namespace) -> int:
    from .. import zoo  # the zoo only, no torch: listing stays quick

    if args.models_command == "list":
        root = zoo.zoo_dir(args.models_dir)
        entries = zoo.read_registry(args.models_dir)
        print(f"models in {root}:")
        width = max([len(n) for n in entries] + [4])
        for name in sorted(entries):
            e = entries[name]
            print(f"  {name:<{width}}  {e.size_bytes / 1e6:6.2f} MB  {e.summary}")
        if not entries:
            print("  (none)")
        return 0
    if args.models_command == "show" and zoo.looks_like_path(args.name):
        from ..checkpoint import describe_metadata, read_metadata  # a file: its metadata (torch loads here)

        print(describe_metadata(read_metadata(args.name), os.path.basename(args.name)))
        return 0
    if args.models_command == "show":
        entry = zoo.model_info(args.name, args.models_dir)
        print(json.dumps(entry.to_dict(), indent=1))
        print()
        print(zoo.card_text(args.name, args.models_dir))
        return 0
    # verify
    results = zoo.verify_models(args.models_dir, load=True)
    for name, ok, message in results:
        print(f"{'OK  ' if ok else 'FAIL'} {name}: {message}")
    failed = [name for name, ok, _ in results if not ok]
    if failed:
        print(f"error: {len(failed)} of {len(results)} model(s) failed verification: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    print(f"all {len(results)} model(s) verified")
    return 0
