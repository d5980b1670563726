"""``nbpipe export`` and ``nbpipe inspect``: subcommands the main CLI adds with :func:`register`.

Handlers take the parsed ``args`` and return an exit code: 0 on success, 1 when an
:class:`~nbpipe.errors.NbpipeError` explains the problem (printed to stderr, no traceback).
Non-goal: owning the top-level parser (``nbpipe/cli.py`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import NbpipeError


def register(subparsers: Any) -> None:
    """Add the ``export`` and ``inspect`` subcommands to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("export", help="Export a notebook to a pipeline package or KFP YAML.",
                              description="Build a package from the cells of NOTEBOOK that define its pipeline, "
                              "in a fresh Python process (heavy compute cells never run).")
    p.add_argument("notebook", help="The .ipynb file.")
    p.add_argument("-o", "--output", help="Output file (default: NOTEBOOK with .nbpipe or .yaml).")
    p.add_argument("--format", choices=("nbpipe", "kfp"), default="nbpipe",
                   help="nbpipe package (default) or Kubeflow Pipelines v2 YAML.")
    p.add_argument("--pipeline", help="Which pipeline, when the notebook defines several.")
    p.add_argument("--image", metavar="REF",
                   help="KFP: the step image the YAML references instead of nbpipe/base:pyX.Y, once you have "
                        "built and pushed it (default: $NBPIPE_KFP_IMAGE). Components with their own "
                        "base_image keep it.")
    p.add_argument("--plan", action="store_true", help="Only show which cells would be kept; run nothing.")
    p.set_defaults(func=export_command)
    q = subparsers.add_parser("inspect", help="Show a package's DAG, parameters and components (never unpickles).")
    q.add_argument("package", help="A .nbpipe package file.")
    q.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    q.set_defaults(func=inspect_command)


def _fail(exc: NbpipeError) -> int:
    print(f"nbpipe: {exc.message}", file=sys.stderr)
    return 1


def export_command(args: argparse.Namespace) -> int:
    """Handler of ``nbpipe export``."""
    from . import export_notebook, plan_export

    try:
        if args.plan:
            program = plan_export(args.notebook, args.pipeline)
            for chunk in program.chunks:
                if chunk.plain is not None:
                    p = chunk.plain
                    print(f"step {chunk.filename}: '{p['name']}' (plain %%component cell, compiled, not run) "
                          f"inputs {', '.join(p['wired']) or '-'} from earlier steps; outputs {', '.join(p['outputs']) or '-'}")
                    continue
                kept = "all" if chunk.keep is None else f"statements {', '.join(str(i + 1) for i in chunk.keep)}"
                print(f"keep {chunk.filename}: {kept}")
            for note in program.notes:
                print(f"note {note}")
            return 0
        suffix = ".yaml" if args.format == "kfp" else ".nbpipe"
        output = Path(args.output) if args.output else Path(args.notebook).with_suffix(suffix)
        start = time.monotonic()
        if args.format != "kfp":
            if args.image:
                raise NbpipeError("--image is for KFP YAML", hint="Add --format kfp, or leave --image out.")
            data = export_notebook(args.notebook, output, format=args.format, pipeline=args.pipeline)
            note = ""
        else:
            from .kfp_image import check_image, image_note, kfp_export

            check_image(args.image)  # before the build, not after it
            data, images, chosen = kfp_export(export_notebook(args.notebook, pipeline=args.pipeline), args.image)
            output.write_bytes(data)
            again = (f"nbpipe export {args.notebook} --format kfp"
                     + (f" -o {args.output}" if args.output else "")
                     + (f" --pipeline {args.pipeline}" if args.pipeline else "") + " --image {image}")
            note = image_note(images, chosen, again)
    except NbpipeError as exc:
        return _fail(exc)
    print(f"Wrote {output} ({len(data):,} bytes) in {time.monotonic() - start:.1f} s")
    if note:
        print(note)
    return 0


def inspect_command(args: argparse.Namespace) -> int:
    """Handler of ``nbpipe inspect``."""
    from ..package import lean_validator
    from .describe import describe_package, package_summary

    lean_validator()  # a process of its own: jsonschema without its (unused, ~1 s) format libraries

    try:
        if args.json:
            print(json.dumps(package_summary(args.package), indent=1, sort_keys=True))
        else:
            sys.stdout.write(describe_package(args.package))
    except NbpipeError as exc:
        return _fail(exc)
    return 0
