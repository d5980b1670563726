"""QA: ``%nbpipe export`` after editing a cell and running it without saving the notebook.

The export builds the *saved* notebook, so the package silently held the old code of the edited
component. It now names the component whose kernel code differs and says what to do (save and
export again, or ``--from-kernel``). The KFP image hint's "export again" command keeps the user's
``-o``/``--notebook`` (it dropped them, so following it wrote somewhere else).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

CELLS = [
    "import nbpipe",
    "SCALE = 3",
    "%%component double\ndef double(x: int) -> int:\n    return x * SCALE",
    "@nbpipe.component\ndef total(y: int) -> float:\n    return float(y) + 0.5",
    "@nbpipe.pipeline\ndef flow(x: int = 2):\n    total(y=double(x=x).output)",
]


def _save(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    path = tmp_path / "edited.ipynb"
    nbformat.write(nb, path)
    return path


def test_export_names_a_component_edited_in_the_kernel_but_not_saved(ip: Any, tmp_path: Path, capsys: Any) -> None:
    path = _save(tmp_path)
    for source in CELLS:
        assert ip.run_cell(source).success
    out = tmp_path / "same.nbpipe"
    capsys.readouterr()
    ip.run_line_magic("nbpipe", f"export --notebook {path} -o {out}")
    assert "Note:" not in capsys.readouterr().out  # the kernel runs what is saved: nothing to say

    assert ip.run_cell("%%component double\ndef double(x: int) -> int:\n    return x * SCALE * 100").success
    ip.run_line_magic("nbpipe", f"export --notebook {path} -o {tmp_path / 'stale.nbpipe'}")
    text = capsys.readouterr().out
    assert ("Note: this kernel's 'double' differs from the saved edited.ipynb (a cell edited and run but not "
            "saved?); the export holds the saved version. Save the notebook and export again, or add "
            "--from-kernel to package the kernel's pipeline.") in text, text
    assert "'total'" not in text

    ip.run_line_magic("nbpipe", f"export --notebook {path} -o {tmp_path / 'kernel.nbpipe'} --from-kernel")
    assert "Note:" not in capsys.readouterr().out


def test_kfp_image_hint_repeats_the_output_and_notebook(ip: Any, tmp_path: Path, capsys: Any) -> None:
    path = _save(tmp_path)
    out = tmp_path / "flow.yaml"
    ip.run_line_magic("nbpipe", f"export --notebook {path} -o {out} --format kfp")
    text = capsys.readouterr().out
    assert f"%nbpipe export --format kfp --notebook {path} -o {out} --image REGISTRY/" in text, text
