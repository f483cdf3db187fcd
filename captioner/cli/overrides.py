"""The commands' entry point: Hydra's, after a check of the command line that says how to quote a value,
with what Hydra cannot compose said in one line.

Hydra's override grammar reads ``, = ' " [ ] { } #`` and letters beyond ASCII as syntax, so a file
name holding one (``input=it's.png``) stops it with a lexer message that never says the cure:
quoting. Such an override is refused here in one line that gives the quoted form to paste. A key
or a group option that does not exist gets Hydra's own words, in one line."""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
from collections.abc import Callable

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from captioner.cli.config import CONFIG_PATH, TRACEBACKS, tracebacks_asked


def command(config_name: str) -> Callable[[Callable], Callable]:
    """``hydra.main`` on ``conf/{config_name}.yaml``, with the command line checked first."""

    def decorate(function: Callable) -> Callable:
        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)(function)

        @functools.wraps(function)
        def main(*args, **kwargs):
            if not args and not kwargs:  # from the command line, not a config passed in
                problem = command_line_problem(sys.argv[1:])
                if problem:
                    print(f"error: {problem}", file=sys.stderr)
                    sys.exit(1)
            os.environ.setdefault(TRACEBACKS, "1" if tracebacks_asked() else "0")  # the user's wish, kept
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises what it cannot compose to here, not prints it
            try:
                return hydra_main(*args, **kwargs)
            except CompactHydraException as error:
                if tracebacks_asked():
                    raise
                print(f"error: {composition_problem(error)}", file=sys.stderr)
                sys.exit(1)

        return main

    return decorate


def command_line_problem(argv: list[str]) -> str | None:
    """What Hydra would refuse in ``argv`` with a traceback or a lexer message, said in one line: modes
    that exclude each other, or the first override it cannot read as one value and how to quote it.
    None if there is nothing to say.

    Outside a multirun, a comma would make a list to sweep over, which a single run refuses too."""
    arguments, _ = get_args_parser().parse_known_args(argv)
    modes = [flag for flag, given in (("-m", arguments.multirun), ("--cfg", arguments.cfg), ("--info", arguments.info),
                                      ("--run", arguments.run)) if given]
    if len(modes) > 1:
        return f"{' and '.join(modes)} cannot be given together: Hydra does one of them"
    parser = OverridesParser.create()
    for override in arguments.overrides:
        try:
            parsed = parser.parse_overrides([override])[0]
        except OverrideParseException:
            reason = "Hydra cannot read this value"
        else:
            if arguments.multirun or not parsed.is_sweep_override():
                continue
            reason = "a comma makes a list of values to sweep over (with -m)"
        key, separator, value = override.partition("=")
        if not separator:
            return f"{override}: Hydra cannot read this override (key=value)"
        return f"{override}: {reason}; to mean one value, quote it: {shlex.quote(f'{key}={quoted(value)}')}"
    return None


def composition_problem(error: Exception) -> str:
    """Hydra's message for a command line it cannot compose, in one line: its sentences, the options it
    lists joined by commas, without the config search path, and the reason OmegaConf gave."""
    lines = str(error).split("Config search path")[0].splitlines()
    sentences = [line.strip() for line in lines if line.strip() and not line.startswith("\t")]
    options = [line.strip() for line in lines if line.startswith("\t")]
    text = ""
    for sentence in sentences:
        text += sentence if not text else (" " if text.endswith((".", ":", ";")) else "; ") + sentence
    text += " " + ", ".join(options) if options else ""
    if isinstance(error.__cause__, OmegaConfBaseException):
        text += f" ({str(error.__cause__).splitlines()[0]})"
    return text


def quoted(value: str) -> str:
    """``value`` as a double-quoted string of Hydra's grammar: quotes and the backslashes before them
    (or at the end) escaped, and ``${`` escaped so that OmegaConf does not read an interpolation."""
    escaped = re.sub(r'(\\*)("|$)', lambda m: m.group(1) * 2 + ("\\" if m.group(2) else "") + m.group(2), value)
    return '"' + escaped.replace("${", "\\${") + '"'
