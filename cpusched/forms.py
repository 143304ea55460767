"""Admin forms for parameters and configuration import.

The parameter form holds raw text and does no checking of its own: every value
goes to :func:`cpusched.config.apply`, so the admin refuses exactly what the
shell command and the API refuse, with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django import forms

from cpusched.config import Effective, Problem, coerce, to_text
from cpusched.params import Param

REASON_HELP = "Recorded in the parameter history with your user name"


def problem_text(problem: Problem) -> str:
    """A problem without its key, for showing next to the key's own field."""
    if problem.value is None:
        return problem.message
    return f"{problem.value!r} is refused: {problem.message}"


def _value_field(param: Param, entry: Effective) -> forms.Field:
    label = param.key
    initial = to_text(entry.value)
    if param.type == "bool":
        choices = [("true", "true"), ("false", "false")]
        return forms.ChoiceField(label=label, choices=choices, initial=initial)
    if param.type == "choice":
        choices = [(c, c) for c in param.choices]
        return forms.ChoiceField(label=label, choices=choices, initial=initial)
    # Numbers stay text here so config.apply reports a wrong type together with
    # every other problem of the change, naming the allowed range.
    return forms.CharField(
        label=label,
        initial=initial,
        required=False,
        widget=forms.TextInput(attrs={"size": 24 if param.type == "string" else 12}),
    )


class ParameterValuesForm(forms.Form):
    """One field per parameter; :meth:`changes` gives what the operator changed."""

    def __init__(
        self,
        params: Iterable[Param],
        current: Mapping[str, Effective],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.params = list(params)
        self.current = current
        for param in self.params:
            self.fields[param.key] = _value_field(param, current[param.key])
        self.fields["reason"] = forms.CharField(
            required=False, max_length=500, help_text=REASON_HELP
        )

    def rows(self) -> list[tuple[Param, Effective, forms.BoundField]]:
        return [(p, self.current[p.key], self[p.key]) for p in self.params]

    def changes(self) -> dict[str, str]:
        """Submitted values that differ from the effective ones, as raw text."""
        changed = {}
        for param in self.params:
            raw = self.cleaned_data.get(param.key, "")
            if not _same(param, raw, self.current[param.key].value):
                changed[param.key] = raw
        return changed

    def add_problems(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            if problem.key in self.fields:
                self.add_error(problem.key, problem_text(problem))
            else:
                self.add_error(None, str(problem))


def _same(param: Param, raw: str, value: Any) -> bool:
    try:
        return coerce(param, raw) == value
    except ValueError:
        return False


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="A JSON file written by Export (or a flat {key: value} object)"
    )
    reason = forms.CharField(required=False, max_length=500, help_text=REASON_HELP)

    MAX_BYTES = 1_000_000

    def clean_file(self) -> str:
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError(
                f"The file has {upload.size} bytes; at most {self.MAX_BYTES} allowed"
            )
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(f"The file is not UTF-8 text: {exc}") from None
