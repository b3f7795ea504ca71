import re


def number(text, pattern):
    """The float captured by ``pattern``'s first group in ``text`` (a failed match fails the test)."""
    found = re.search(pattern, text)
    assert found, "no match for {!r} in:\n{}".format(pattern, text)
    return float(found.group(1))
