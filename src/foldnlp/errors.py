"""User-facing input errors: raised for bad files, columns, rows or settings; CLIs turn them into exit status 2."""


class InputError(Exception):
    """A problem with the user's input that they can fix. The message names the file, column and rows."""


def format_rows(rows, limit: int = 10) -> str:
    """'3, 17, 42' or '3, 17, ... (+25 more)': row lists in messages stay readable for large files."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown if len(rows) <= limit else f"{shown}, ... (+{len(rows) - limit} more)"
