"""The ``s2c2seg`` command line: one sub-command per module, each registered by that module.

Errors follow one contract. The command prints one line on stderr,
``s2c2seg: error: <what went wrong, naming the input> (<the fix>)``, and exits with status 2 for usage and
input errors (arguments, files, data, configuration, weights that cannot be loaded) or 1 for a failure while
running. ``--debug`` (anywhere on the line) or ``S2C2SEG_DEBUG=1`` prints the traceback first. Under torchrun
every rank exits with that status (so torchrun stops; it then prints its own failure summary) and only rank 0
prints, except for an error of one image (:class:`~s2c2seg.evaluate.ImageError`), which the rank that met it
reports (the ranks that then lose their peer stay quiet).

Every path option is declared with :func:`add_path_argument` and a :class:`PathRule` (file or folder, whether it
must exist, whether it may be empty, the fix): a path that does not exist, a file where a folder belongs (or the
reverse) or an empty folder is refused while the line is parsed, before any work, by :func:`check_path`, with a
:class:`PathError` naming the option, the path and the fix (exit 2).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .distributed import PeerFailedError, env_rank

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED", "DEBUG_ENV", "OFFLINE_FIX", "QUIET_EXIT_DELAY_S",
           "UsageError", "PathError", "PathRule", "OUT_FOLDER", "check_path", "add_path_argument", "build_parser",
           "main", "console", "exit_status", "error_line"]

# module that owns each sub-command; each exposes ``register_cli(subparsers)`` which sets ``func``.
_COMMANDS = ("s2c2seg.cli_eval", "s2c2seg.cli_sweep", "s2c2seg.cli_tables", "s2c2seg.cli_notebooks",
             "s2c2seg.cli_segment")

EXIT_FAILURE = 1
"""Exit status of a failure while running."""
EXIT_USAGE = 2
"""Exit status of a usage or input error (argparse's own status for usage errors)."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, as shells report it)."""
DEBUG_ENV = "S2C2SEG_DEBUG"
"""Environment variable that, set to 1, makes every error print its traceback (as ``--debug``)."""
_TRUE = {"1", "on", "yes", "true"}
QUIET_EXIT_DELAY_S = 2.0
"""Seconds a rank that stays quiet waits before exiting: torchrun stops every rank as soon as one exits, and
rank 0 must not be stopped before it has printed the error."""
OFFLINE_FIX = ("--backend random (RANDOM WEIGHTS), sim (SIMULATED) or auto (real weights, else the simulation) runs "
               "without real weights; to get them, run once with network access or point HF_HOME at a Hugging Face "
               "cache that holds them, after which HF_HUB_OFFLINE=1 works")
"""The fixes the command line offers when real weights cannot be loaded."""


class UsageError(ValueError):
    """The command line itself is wrong (an unknown option, a missing or malformed argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse with ``--debug`` on every (sub-)command, so it may stand anywhere on the line, and usage errors
    raised (then reported on one line) instead of printed under the usage block."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help=f"print the traceback of an error (also {DEBUG_ENV}=1)")

    def error(self, message: str):
        command = self.prog.partition(" ")[2]  # "eval" of "s2c2seg eval"; "" for the top level
        raise UsageError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


class PathError(OSError):
    """A path on the command line that cannot be used as given (the message names the option and the fix)."""


@dataclass(frozen=True)
class PathRule:
    """What a path option takes: ``kind`` (``"file"``, ``"folder"`` or ``"file or folder"``), whether it must
    already exist (an output is created when missing) and may be empty, and the fix an error offers."""

    kind: str
    fix: str
    must_exist: bool = True
    may_be_empty: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("file", "folder", "file or folder"):
            raise ValueError(f"PathRule.kind must be 'file', 'folder' or 'file or folder', got {self.kind!r}")


OUT_FOLDER = PathRule("folder", "give a folder; it is created when missing", must_exist=False)
"""An output folder (``--out``, ``--cache-dir``): created when missing, so only a file in its place is refused."""


def check_path(value: str | os.PathLike, option: str, rule: PathRule) -> Path:
    """``value`` as a Path when it fits ``rule``; else :class:`PathError` naming ``option``, the path and the fix."""
    path = Path(value).expanduser()
    if not path.exists():
        if rule.must_exist:
            raise PathError(f"{option} {value}: no such {rule.kind} ({rule.fix})")
        return path
    if rule.kind == "folder" and not path.is_dir():
        raise PathError(f"{option} {value} is a file, not a folder ({rule.fix})")
    if rule.kind == "file" and path.is_dir():
        raise PathError(f"{option} {value} is a folder, not a file ({rule.fix})")
    if rule.must_exist and not rule.may_be_empty:
        if path.is_dir() and next(path.iterdir(), None) is None:
            raise PathError(f"{option} {value} is an empty folder ({rule.fix})")
        if path.is_file() and path.stat().st_size == 0:
            raise PathError(f"{option} {value} is an empty file ({rule.fix})")
    return path


class _PathType:
    """argparse ``type=`` of a path option: :func:`check_path`, keeping the string. Its :class:`PathError` is an
    ``OSError``, which argparse does not turn into a usage message: it reaches :func:`console` whole."""

    def __init__(self, option: str, rule: PathRule) -> None:
        self.option, self.rule = option, rule

    def __call__(self, value: str) -> str:
        check_path(value, self.option, self.rule)
        return value

    def __repr__(self) -> str:
        return f"path ({self.rule.kind})"


def add_path_argument(parser, *flags: str, rule: PathRule, **kwargs) -> argparse.Action:
    """``parser.add_argument(*flags, **kwargs)`` for a path checked by ``rule`` when the line is parsed."""
    # an option is named by its long form, a positional by its metavar
    option = max(flags, key=len) if flags[0].startswith("-") else kwargs.get("metavar", flags[0].upper())
    return parser.add_argument(*flags, type=_PathType(option, rule), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="s2c2seg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status; errors propagate (for programs and tests; see :func:`console`)."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def _input_errors() -> tuple[type[BaseException], ...]:
    from .models.offline import ModelUnavailableError

    return (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
            PathError, ModelUnavailableError)


def exit_status(exc: BaseException) -> int:
    """2 for a usage or input error, 1 for a failure while running (an image's error: its cause's status)."""
    from .evaluate import ImageError

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, ImageError) and exc.__cause__ is not None:
        return exit_status(exc.__cause__)
    return EXIT_USAGE if isinstance(exc, _input_errors()) else EXIT_FAILURE


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def error_line(exc: BaseException) -> str:
    """The one line the command prints for ``exc``: the API's own message, joined onto one line."""
    from .models.offline import ModelUnavailableError

    if isinstance(exc, KeyboardInterrupt):
        return "s2c2seg: interrupted"
    if isinstance(exc, ModelUnavailableError):
        text = f"{exc.problem} ({OFFLINE_FIX})"
    else:
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, _input_errors()):  # a failure while running: say what kind, and how to see more
            text = f"{type(exc).__name__}: {text} (--debug shows the traceback)"
    rank = env_rank()
    return "s2c2seg: error: " + (f"rank {rank}: " if rank else "") + _one_line(text)


def _reports(exc: BaseException, debug: bool) -> bool:
    """Whether this process prints ``exc``: rank 0, and another rank an error of its own images; a rank that
    only saw another rank stop (:class:`~s2c2seg.distributed.PeerFailedError`) stays quiet unless debugging."""
    from .evaluate import ImageError

    if isinstance(exc, PeerFailedError):
        return debug
    return env_rank() == 0 or isinstance(exc, ImageError)


def console(argv: Sequence[str] | None = None) -> int:
    """The ``s2c2seg`` command: :func:`main` with the error contract of the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip().lower() in _TRUE
    try:
        return main(argv)
    except (Exception, KeyboardInterrupt) as exc:
        if _reports(exc, debug):
            if debug:
                traceback.print_exc()
            print(error_line(exc), file=sys.stderr, flush=True)
        else:
            time.sleep(QUIET_EXIT_DELAY_S)
        return exit_status(exc)
