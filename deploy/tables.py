"""Plain-text and Markdown tables (returned as strings; the CLI prints them). Python 3.6."""


def format_table(headers, rows, align=None):
    """Fixed-width text table. ``align``: string of 'l'/'r' per column (default: numbers right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        align = "".join("r" if rows and all(_is_number(r[i]) for r in rows) else "l" for i in range(len(headers)))
    def line(row):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)).rstrip()
    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)


def format_markdown_table(headers, rows):
    out = ["| " + " | ".join(str(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(out)


def _is_number(value):
    text = str(value).replace(",", "").replace("%", "").replace("x", "").strip()
    if text in ("", "-"):
        return True
    try:
        float(text)
        return True
    except ValueError:
        return False
