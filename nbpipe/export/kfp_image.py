"""Which container image KFP YAML references, and how to build and push it: the note every KFP
export prints (``nbpipe export --format kfp``, ``%nbpipe export --format kfp``, the Lab panel).

Every component runs on nbpipe's step image ``nbpipe/base:pyX.Y`` (X.Y: the Python that pickled
it) unless it chose its own with ``component(base_image=...)``. That image is on no public
registry: it is built from ``cluster/base-image/Dockerfile`` (see ``cluster/README.md``) and pushed
where the cluster pulls from; ``--image`` / ``$NBPIPE_KFP_IMAGE`` make the YAML reference the pushed
name instead. Non-goals: building or pushing images (no container runtime is assumed here).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ExportError

IMAGE_ENV = "NBPIPE_KFP_IMAGE"
_DEFAULT = re.compile(r"nbpipe/base:py(\d+\.\d+)")
# registry[:port]/path[:tag][@digest], as a container reference may be written.
_REFERENCE = re.compile(r"[a-z0-9][a-z0-9._\-/:]*(@sha256:[0-9a-f]{64})?", re.IGNORECASE)
REGISTRY = "REGISTRY"  # placeholder the user replaces: e.g. ghcr.io/you or registry.example.com:5000


def is_default_image(comp: dict[str, Any]) -> bool:
    """A component that runs on nbpipe's default step image (it did not set ``base_image``)."""
    return bool(_DEFAULT.fullmatch(str(comp.get("image", ""))))


def check_image(image: str | None) -> str | None:
    """``image`` stripped, or an :class:`ExportError` saying what a valid reference looks like."""
    if image is None:
        return None
    image = image.strip()
    if not image or not _REFERENCE.fullmatch(image) or image.endswith((":", "/")):
        raise ExportError(f"{image!r} is not a container image reference",
                          hint="Give it as REGISTRY/NAME:TAG, e.g. ghcr.io/you/nbpipe-base:py3.11 "
                               f"(--image or ${IMAGE_ENV}).")
    return image


def _python_minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def kfp_images(spec: dict[str, Any], image: str | None = None) -> list[dict[str, Any]]:
    """The images a package's KFP YAML references: ``[{image, steps, default, python}]``.

    ``default`` is true for nbpipe's step image (or ``image``, which replaces it); ``python`` is
    the Python minor the image must have (the components' payloads load only on it).
    """
    comps = spec["components"]
    out: dict[str, dict[str, Any]] = {}
    for step in spec["steps"]:
        comp = comps[step["component"]]
        default = is_default_image(comp)
        name = image if default and image else comp["image"]
        entry = out.setdefault(name, {"image": name, "steps": [], "default": default,
                                      "python": _python_minor(comp.get("python", ""))})
        entry["steps"].append(step["name"])
    return sorted(out.values(), key=lambda e: (not e["default"], e["image"]))


def image_note(images: list[dict[str, Any]], image: str | None, again: str, command: bool = True) -> str:
    """What a KFP export tells the user about its images, on one screen.

    ``again`` is how to export again with another image, with ``{image}`` where the name goes:
    a command (``nbpipe export nb.ipynb --format kfp --image {image}``, shown indented), or with
    ``command=False`` a sentence (the panel's "enter {image} as the KFP image below ...").
    """
    lines: list[str] = []
    for e in images:
        steps = e["steps"]
        which = "every step" if len(images) == 1 else f"step{'s' if len(steps) > 1 else ''} {', '.join(steps)}"
        py = e["python"]
        if e["default"] and not image:
            pushed = f"{REGISTRY}/nbpipe-base:py{py}"
            lines += [
                f"Image: {which} runs on {e['image']}, nbpipe's step image for Python {py} (the kernel's: "
                "the steps' code loads only there). No public registry has it: Kubeflow can pull it only once "
                "you build it and push it where your cluster pulls from (REGISTRY below, e.g. ghcr.io/you). "
                "From a checkout of nbpipe (cluster/README.md, step 1):",
                f"  docker build -f cluster/base-image/Dockerfile --build-arg PYTHON_VERSION={py} -t {pushed} .",
                f"  docker push {pushed}",
                *(["then export again pointing at it:", "  " + again.format(image=pushed)] if command
                  else ["then " + again.format(image=pushed)]),
                f"(or set {IMAGE_ENV}={pushed} for every export; kind/minikube: `kind load docker-image` "
                "instead of a push).",
            ]
        elif e["default"]:
            lines.append(f"Image: {which} runs on {e['image']} (in place of nbpipe/base:py{py}). Make sure the "
                         f"cluster can pull it and it has Python {py} and the packages the steps import "
                         "(cluster/base-image/Dockerfile builds one).")
        else:
            lines.append(f"Image: {which} runs on {e['image']}, the component's own base_image: push it where "
                         f"the cluster pulls from; it needs Python {py} (the steps' code loads only there).")
    return "\n".join(lines)


def kfp_export(package: bytes, image: str | None = None) -> tuple[bytes, list[dict[str, Any]], str | None]:
    """KFP YAML for a package, the images it references and the image used in place of the
    default (``image`` or ``$NBPIPE_KFP_IMAGE``; None: the default)."""
    import os

    from ..package import read_package
    from .kfp import package_to_kfp

    chosen = check_image(image or os.environ.get(IMAGE_ENV) or None)
    pkg = read_package(package)
    return package_to_kfp(pkg, chosen).encode("utf-8"), kfp_images(pkg.spec, chosen), chosen
