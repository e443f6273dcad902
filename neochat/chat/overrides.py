"""One field of a frozen settings dataclass changed from ``NAME=VALUE`` text
(``--limit``, ``--call-limit``, ``--throttle``); a dotted name reaches into a
nested one (``audio.max_datagram``, ``account.lock_after``)."""

from dataclasses import fields, is_dataclass, replace


def override(settings, name, text, what):
    """A copy of ``settings`` with ``name`` set from ``text``.  ValueError for
    an unknown name or a bad or negative number; ``what`` names the kind
    of setting in the message."""
    head, _, rest = name.partition(".")
    field = {f.name: f for f in fields(settings)}.get(head)
    current = getattr(settings, head, None)
    if field is None or bool(rest) != is_dataclass(current):
        raise ValueError(f"unknown {what} {name!r} (known: {', '.join(dotted_names(settings))})")
    if rest:
        return replace(settings, **{head: override(current, rest, text, what)})
    value = (field.type if isinstance(field.type, type) else type(current))(text)
    if value < 0:
        raise ValueError(f"a {what} cannot be negative: {text}")
    return replace(settings, **{head: value})


def dotted_names(settings):
    for name in (f.name for f in fields(settings)):
        value = getattr(settings, name)
        if is_dataclass(value):
            yield from (f"{name}.{inner}" for inner in dotted_names(value))
        else:
            yield name
