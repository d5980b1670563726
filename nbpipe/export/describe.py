"""What a package holds, for ``nbpipe inspect``: the DAG, parameters, components, Python needed.

Uses :func:`nbpipe.read_package` only, so payloads are checked against their digests but never
unpickled or imported: inspecting a package from anyone is safe.
Non-goal: showing component source beyond its first line (``nbpipe inspect --json`` has it all).
"""

from __future__ import annotations

import os
from typing import Any

from ..compiler import upstream_of
from ..package import Package, read_package


def _python_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def package_summary(source: bytes | str | os.PathLike[str] | Package) -> dict[str, Any]:
    """A JSON-able summary of a package: name, digest, python, parameters, steps, components."""
    pkg = source if isinstance(source, Package) else read_package(source)
    spec = pkg.spec
    comps = spec["components"]
    pythons = sorted({_python_minor(c["python"]) for c in comps.values()})
    steps = []
    for s in spec["steps"]:
        entry = {"name": s["name"], "component": s["component"], "upstream": upstream_of(s),
                 "inputs": s["inputs"]}
        if s.get("display_name"):
            entry["display_name"] = s["display_name"]
        steps.append(entry)
    components = {}
    for key, c in comps.items():
        opts = c["options"]
        components[key] = {
            "image": c["image"], "packages": opts.get("packages", []), "resources": opts.get("resources", {}),
            "retries": opts["retries"], "backoff": opts.get("backoff"), "timeout": opts.get("timeout"),
            "cache": opts["cache"], "max_cache_staleness": opts.get("max_cache_staleness"),
            "env": opts.get("env", {}), "python": c["python"], "cloudpickle": c.get("cloudpickle", ""),
            "serializer": c["payload"]["serializer"], "payload_bytes": c["payload"].get("size"),
            "inputs": c["inputs"], "outputs": c["outputs"],
        }
    return {"name": pkg.name, "digest": pkg.digest, "size": len(pkg.data), "python": pythons,
            "parameters": pkg.parameters, "steps": steps, "components": components}


def _io(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i['name']}: " + (f"{i['artifact_type']} artifact" if i["kind"] == "artifact" else i["type"])
                     for i in items) or "-"


def _resources(r: dict[str, Any]) -> str:
    parts = [f"{k}={r[k]}" for k in ("cpu", "memory") if r.get(k)]
    if r.get("gpu"):
        parts.append(f"gpu={r['gpu']}")
    return " ".join(parts) or "default"


def describe_package(source: bytes | str | os.PathLike[str] | Package) -> str:
    """Human-readable description of a package (what ``nbpipe inspect`` prints).

    Parameters
    ----------
    source : bytes, path or :class:`~nbpipe.package.Package`
        The package.

    Raises
    ------
    nbpipe.errors.PackageError
        The file is not a valid package.
    """
    s = package_summary(source)
    lines = [f"Pipeline {s['name']}  ({s['size']:,} bytes, sha256 {s['digest'][:16]}…)",
             f"Python: needs {' and '.join(s['python'])}.x (payloads load only on the Python minor they were "
             "pickled with)", "", "Parameters:"]
    for p in s["parameters"]:
        default = f" = {p['default']!r}" if "default" in p else " (required)"
        lines.append(f"  {p['name']}: {p['type']}{default}")
    if not s["parameters"]:
        lines.append("  (none)")
    lines += ["", "Steps (in run order):"]
    width = max(len(st["name"]) for st in s["steps"])
    for st in s["steps"]:
        shown = f" \"{st['display_name']}\"" if st.get("display_name") else ""
        ups = ", ".join(st["upstream"]) or "-"
        lines.append(f"  {st['name']:<{width}}  upstream: {ups}  component: {st['component']}{shown}")
    lines += ["", "Components:"]
    for name, c in s["components"].items():
        staleness = c["max_cache_staleness"]
        cache = ("on" + (f", max staleness {staleness:g}s" if staleness else "")) if c["cache"] else "off"
        lines += [
            f"  {name}",
            f"    inputs:    {_io(c['inputs'])}",
            f"    outputs:   {_io(c['outputs'])}",
            f"    image:     {c['image']}",
            f"    packages:  {', '.join(c['packages']) or '-'}",
            f"    resources: {_resources(c['resources'])}",
            f"    options:   retries={c['retries']} backoff={c['backoff']:g}s timeout="
            f"{'%gs' % c['timeout'] if c['timeout'] else '-'} cache={cache}",
            f"    payload:   {c['serializer']} {c['payload_bytes']:,} bytes, Python {c['python']}, "
            f"cloudpickle {c['cloudpickle'] or '?'}",
        ]
        if c["env"]:
            lines.append(f"    env:       {', '.join(f'{k}={v}' for k, v in sorted(c['env'].items()))}")
    return "\n".join(lines) + "\n"
