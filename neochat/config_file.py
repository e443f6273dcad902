"""``--config neochat.toml``: the options of ``twistd neochat --help`` in a
TOML file, by the same names.

The file becomes command-line arguments placed before the real ones, so the
Options class parses and checks both the same way; an option given on the
command line replaces the file's value for it (all of it, for repeatable
options).  It works for any option the Options class defines:

- a flag (``friends-only``) takes ``true`` or ``false``;
- an option with a value takes a string or a number;
- a repeatable option (an ``opt_*`` method: ``listen``) takes a list too;
- an option of ``NAME=VALUE`` assignments (``call-limit``) takes a table,
  nested tables giving dotted names (``[call-limit.audio]``).
"""

import os
import tomllib

from twisted.python import usage

CONFIG_VARIABLE = "NEOCHAT_CONFIG"
NOT_IN_FILES = ("help", "version", "config")


class ConfigError(usage.UsageError):
    """What is wrong with a config file, naming the file and the key."""


def config_path(argv):
    """The file ``--config`` names in ``argv``, else $NEOCHAT_CONFIG, else None."""
    for index, argument in enumerate(argv):
        if argument == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith("--config="):
            return argument.partition("=")[2]
    return os.environ.get(CONFIG_VARIABLE) or None


FLAG, SINGLE, REPEATABLE = "flag", "single", "repeatable"


def option_kinds(options):
    """{name: FLAG, SINGLE or REPEATABLE} for every long option of a
    usage.Options: parameters (optParameters) keep one value, ``opt_*``
    methods that take a value may be repeated."""
    kinds = {}
    for spec in options.longOpt:
        name = spec.rstrip("=")
        if name in NOT_IN_FILES:
            continue
        if not spec.endswith("="):
            kinds[name] = FLAG
        elif isinstance(options._dispatch.get(name), usage.CoerceParameter):
            kinds[name] = SINGLE
        else:
            kinds[name] = REPEATABLE
    return kinds


def read(path):
    """The file's table; ConfigError when it cannot be read or is not TOML."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def entries(path, options):
    """[(name, [arguments])] for each key of the file, in file order."""
    kinds = option_kinds(options)
    found = []
    for key, value in read(path).items():
        name = key.replace("_", "-")
        if name not in kinds:
            raise ConfigError(f"{path}: unknown option {key!r} (twistd neochat --help lists them)")
        found.append((name, _arguments(path, key, name, kinds[name], value)))
    return found


def _arguments(path, key, name, kind, value):
    def wrong(expected):
        return ConfigError(f"{path}: {key} must be {expected}, not {value!r}")

    if kind == FLAG:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return [f"--{name}"] if value else []
    if kind == REPEATABLE and isinstance(value, dict):
        return [f"--{name}={assignment}" for assignment in _assignments(value)]
    values = value if kind == REPEATABLE and isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise wrong("a string or a number" + (", or a list or table of them" if kind == REPEATABLE else ""))
    return [f"--{name}={item}" for item in values]


def _assignments(table, prefix=""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _assignments(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}={str(value).lower() if isinstance(value, bool) else value}"


def named_on_command_line(argv, options):
    """The option names ``argv`` gives (so the file's values for them go)."""
    kinds = option_kinds(options)
    names = set()
    for argument in argv:
        if argument.startswith("--"):
            name = argument[2:].partition("=")[0]
            if name in kinds:
                names.add(name)
    return names


def merged_arguments(path, options, argv):
    """The file's arguments, less the options ``argv`` names, then ``argv``."""
    overridden = named_on_command_line(argv, options)
    from_file = [argument for name, arguments in entries(path, options) if name not in overridden
                 for argument in arguments]
    return from_file + list(argv)


def check(path, options_class):
    """Parse the file's options on their own; a ConfigError names the file
    and, when one key alone is wrong, that key."""
    found = entries(path, options_class())
    try:
        _parse(options_class, [argument for _, arguments in found for argument in arguments])
    except usage.UsageError as error:
        for name, arguments in found:
            try:
                _parse(options_class, arguments)
            except usage.UsageError as alone:
                raise ConfigError(f"{path}: {name}: {alone}") from None
        raise ConfigError(f"{path}: {error}") from None


def _parse(options_class, arguments):
    """Parse without the config-file step (which would read $NEOCHAT_CONFIG again)."""
    options = options_class()
    usage.Options.parseOptions(options, arguments)
    return options
