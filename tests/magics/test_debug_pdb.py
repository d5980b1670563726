"""``%nbpipe debug`` lands in the post-mortem debugger in a kernel that can take input (as JupyterLab's):
a real ipykernel driven over its channels with ``allow_stdin``, answering the ``ipdb>`` prompts.
The debugger stops on the user's failing line, shows its source and evaluates the step's locals.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

SETUP = '''%load_ext nbpipe
import nbpipe

@nbpipe.component
def train(n: int) -> float:
    total = n * 3
    return total / (n - 6)  # fails for n=6

@nbpipe.pipeline
def pdb_demo(n: int = 6):
    train(n=n)

failed = nbpipe.run(pdb_demo).wait(timeout=300, raise_on_failure=False)
print(failed.state)
'''


@pytest.fixture()
def kernel(tmp_path: Path) -> Iterator[Any]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "NBPIPE_HOME": str(tmp_path / "home")}, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        yield kc
    finally:
        try:
            # the kernel started the runner, so the kernel reaps it (see runner_process.stop_embedded_runner)
            kc.execute_interactive(f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r}); "
                                   "from runner_process import stop_embedded_runner; stop_embedded_runner()",
                                   timeout=60)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def run(kc: Any, code: str, answers: list[str] | None = None) -> tuple[str, list[str]]:
    """Execute ``code``; answer each input prompt with the next of ``answers``; return (output, prompts)."""
    out: list[str] = []
    prompts: list[str] = []
    todo = list(answers or [])

    def on_output(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(content["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(content["traceback"]))

    def on_input(msg: dict[str, Any]) -> None:
        prompts.append(msg["content"]["prompt"])
        kc.input(todo.pop(0) if todo else "q")

    kc.execute_interactive(code, timeout=400, allow_stdin=answers is not None, output_hook=on_output,
                           stdin_hook=on_input)
    return re.sub(r"\x1b\[[0-9;]*m", "", "".join(out)), prompts


@pytest.mark.timeout(900)
def test_debug_opens_ipdb_on_the_failing_line_when_the_kernel_can_take_input(kernel: Any) -> None:
    text, _ = run(kernel, SETUP)
    assert text.strip().endswith("failed"), text
    text, prompts = run(kernel, "%nbpipe debug {failed.id} train", answers=["p total, n", "l", "q"])
    assert prompts and all("ipdb>" in p for p in prompts), prompts
    assert "ipdb>" in prompts[0] and len(prompts) == 3
    debugger = text.rsplit("ZeroDivisionError: division by zero", 1)[1]
    assert "train()" in debugger.splitlines()[0]  # it stopped in the user's function
    assert "(18, 6)" in debugger  # the step's locals, as they were when it failed
    assert "----> 7     return total / (n - 6)" in debugger.split("(18, 6)", 1)[1]  # `l`: the real source
    assert "ZeroDivisionError" in text
    # the next cell is free again: %pdb was only switched on for the debug cell
    text, prompts = run(kernel, "1 / 0 if False else print(get_ipython().call_pdb)", answers=[])
    assert text.strip() == "False" and prompts == []
