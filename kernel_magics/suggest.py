"""Magic arguments with "did you mean": a misspelled option names the one the user meant.

``parse_magic_args(func, line)`` is IPython's ``parse_argstring`` for a ``@magic_arguments``
function, except that an unknown option (``--retires 2``) becomes a one-line ``UsageError``
that suggests the closest real one (``did you mean --retries?``) and lists the rest.
:func:`did_you_mean` and :func:`check_options` work on any ``argparse`` parser (the
``%nbpipe`` subcommands use them too).

Non-goal: guessing positional arguments.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean --retries?`` for the closest of ``choices``, or "" if none is close."""
    by_name = {c.lstrip("-").replace("_", "-"): c for c in sorted(set(choices))}
    close = difflib.get_close_matches(word.lstrip("-").replace("_", "-"), list(by_name), n=1, cutoff=0.6)
    return f" Did you mean {by_name[close[0]]}?" if close else ""


def options_of(parser: argparse.ArgumentParser) -> list[str]:
    """The long and short option strings ``parser`` knows (``--retries``, ``-h``…)."""
    return sorted(s for s in parser._option_string_actions if s.startswith("-"))  # noqa: SLF001


def check_options(tokens: Sequence[str], parser: argparse.ArgumentParser, where: str) -> None:
    """Raise a ``UsageError`` naming the first unknown ``--option`` in ``tokens``, with a suggestion."""
    known = options_of(parser)
    for tok in tokens:
        if tok == "--":
            return
        if not tok.startswith("-") or len(tok) < 2 or tok[1:2].isdigit():
            continue
        opt = tok.split("=", 1)[0]
        if opt in known:
            continue
        if opt.startswith("--") and sum(k.startswith(opt) for k in known) == 1:
            continue  # argparse accepts an unambiguous prefix (--retr)
        longs = ", ".join(k for k in known if k.startswith("--") and k != "--help")
        rest = f"Its options: {longs}." if longs else "It takes no options."
        raise UsageError(f"{where} has no option {opt}.{did_you_mean(opt, known)} {rest}")


def parse_magic_args(func: Callable[..., Any], line: str, where: str) -> Any:
    """``parse_argstring(func, line)``, with "did you mean" for misspelled options."""
    parser = getattr(func, "parser", None)
    tokens: list[str] | None = None
    if parser is not None:
        try:
            tokens = shlex.split(line)
        except ValueError:
            check_options(line.split(), parser, where)
        else:
            check_options(tokens, parser, where)
    try:
        # quotes group words and are no part of a value (--packages "pandas>=2, numpy"), as in a shell;
        # IPython's own split keeps them, which made a package named '"pandas>=2'
        return parser.parse_args(tokens) if tokens is not None else parse_argstring(func, line)
    except UsageError as exc:  # argparse's "invalid int value: 'x'": and where the options are told
        raise UsageError(f"{where}: {str(exc).rstrip('.')}. {where}? lists its options.") from None


_WORD = re.compile(r"""(?:[^\s'"]+|'[^']*'|"[^"]*")+""")


def _unquoted(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _words(line: str) -> list[str]:
    """The words of ``line``; quotes group, and are dropped from a whole word or an ``--option=`` value."""
    if line.count("'") % 2 or line.count('"') % 2:
        return line.split()  # an unbalanced quote: the words as typed, for argparse to name
    words = []
    for word in _bracketed(_WORD.findall(line)):
        option, eq, value = word.partition("=")
        words.append(f"{option}={_unquoted(value)}" if word.startswith("-") and eq else _unquoted(word))
    return words


def _bracketed(words: list[str]) -> list[str]:
    """Words joined while a bracket is open: ``tags=[1, 2]`` and ``cfg={"a": 1}`` are one value each, as typed
    in Python (split at the spaces, ``'2]'`` was taken for a second pipeline)."""
    out: list[str] = []
    depth = 0
    for word in words:
        if depth > 0:
            out[-1] += " " + word
        else:
            out.append(word)
        bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", word)  # brackets inside quotes do not count
        depth = max(0, depth + sum(bare.count(c) for c in "[{(") - sum(bare.count(c) for c in "]})"))
    return out


# the %nbpipe commands whose words after the options are more of their positional list
_POSITIONAL_LISTS = {"run": "args", "logs": "target", "debug": "target"}


def parse_command(parser: argparse.ArgumentParser, line: str) -> Any:
    """``%nbpipe`` arguments: a value in quotes is one word without its quotes (``--name "my run"``,
    ``--notebook 'my nb.ipynb'``), except a ``param='3'``, whose quotes say it is a string; and
    ``PIPELINE param=value`` may follow the options too (``%nbpipe run p --name n x=1``)."""
    args, extra = parser.parse_known_args(_words(line))
    more = _POSITIONAL_LISTS.get(getattr(args, "command", ""))
    if extra and (more is None or any(t.startswith("-") for t in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        getattr(args, more).extend(extra)
    return args


def check_runner_url(url: str | None) -> None:
    """``%nbpipe config runner=localhost:8765`` (no scheme) is refused with the URL meant, before every later
    command fails with httpx's "Request URL is missing an 'http://' or 'https://' protocol" traceback."""
    if url is None or re.match(r"https?://[^/\s]", url):
        return
    fixed = "http://" + url.split("://", 1)[-1]
    raise UsageError(f"runner={url} is not a runner URL: it starts with http:// or https://. "
                     f"Did you mean %nbpipe config runner={fixed}?")


def current_runner() -> str:
    """What ``%nbpipe config`` with no settings says: the runner this kernel's runs go to, and how to change it."""
    from nbpipe.client import _configured

    url, token = _configured()
    where = f"{url}{' with a token' if token else ''}" if url else "the embedded local runner (started on first use)"
    return f"nbpipe runner: {where}. Change it with %nbpipe config runner=URL token=TOKEN (runner=local: the embedded one)."


def note_other_pipelines(cells_pipeline: Any, others: list[str]) -> Any:
    """``%nbpipe run`` with no name runs the plain ``%%component`` cells' pipeline; when the kernel also
    has pipelines of its own, say which ran and how to run the others (it used to pick silently)."""
    others = [o for o in others if o != getattr(cells_pipeline, "name", None)]
    if others:
        print(f"Running the notebook's %%component cells as pipeline '{cells_pipeline.name}'; this kernel also has "
              f"{', '.join(others)}: %nbpipe run {others[0]} runs {'it' if len(others) == 1 else 'that one'}.")
    return cells_pipeline
