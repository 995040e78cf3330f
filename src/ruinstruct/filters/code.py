"""Code: source code of the original whose tokens were altered by the translation.

Code lines of the original are the contents of fenced blocks that hold code and, outside fences,
the lines the translator itself recognises as code (`translate.segment.looks_like_code`). Their
tokens (keywords, identifiers, numbers, brackets, operators; comments skipped, string literals
reduced to their quotes) form a multiset; every token must still be found in the translation
(a translated keyword "def" -> "определить" or an identifier "print" -> "печать" goes missing,
so do changed brackets). Indentation of code lines must survive too, and so must the number of
fence lines, every inline `code` span and every URL of the original.

The token comparison is a multiset over the translation's code lines, so it does not depend on
lines being aligned and extra tokens never hurt. When no token is missing, each code line must
still be found with its exact spacing (comments and string contents aside): "f(x)" -> "f (x)"
or "a.b" -> "a. b" is the translator touching code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from .base import Filter, MessagePair, Reason, clip
from .text import analyze, code_skeleton, code_tokens, indent_of, inline_code_spans, is_art_line, urls


class CodeFilter(Filter):
    name = "code"

    def check_message(self, p: MessagePair) -> Iterator[Reason]:
        cfg = self.cfg
        ei, ri = analyze(p.en), analyze(p.ru)
        code = ei.code_lines
        if code:
            ru_code = ri.any_code_lines
            want = Counter(t for ln in code for t in code_tokens(ln))
            have = Counter(t for ln in ru_code for t in code_tokens(ln))
            missing = want - have
            n_missing, n_total = sum(missing.values()), sum(want.values())
            if n_missing >= cfg.min_missing_tokens and n_missing > cfg.max_missing_fraction * n_total:
                examples = ", ".join(repr(t) for t, _ in missing.most_common(5))
                yield self.reason(
                    "tokens",
                    f"{n_missing} of {n_total} code tokens missing ({n_missing / n_total:.0%}), "
                    f"e.g. {examples}",
                )
            else:
                skel_want = Counter(sk for ln in code if (sk := code_skeleton(ln)).strip())
                skel_have = Counter(code_skeleton(ln) for ln in ru_code)
                altered = skel_want - skel_have
                n_alt = sum(altered.values())
                if n_alt > cfg.max_altered_lines:
                    yield self.reason(
                        "lines",
                        f"{n_alt} of {sum(skel_want.values())} code lines altered (spacing or punctuation), "
                        f"e.g. {clip(next(iter(altered)).strip(), 40)!r}",
                    )
            want_ind = Counter(indent_of(ln) for ln in code if indent_of(ln))
            have_ind = Counter(indent_of(ln) for ln in ri.lines if ln.strip() and indent_of(ln))
            lost = sum((want_ind - have_ind).values())
            if lost > cfg.max_lost_indents:
                yield self.reason("indentation", f"{lost} of {sum(want_ind.values())} indented code lines lost their indentation")
        n_fences_en, n_fences_ru = sum(ei.fence_marker), sum(ri.fence_marker)
        if n_fences_ru < n_fences_en:
            yield self.reason("fences", f"{n_fences_ru} code fence lines, source has {n_fences_en}")
        if cfg.check_inline:
            spans: Counter[str] = Counter()
            for k, ln in enumerate(ei.lines):
                if ei.fenced[k] or ei.fence_marker[k] or is_art_line(ln, self.config.ascii_art.max_word_fraction, self.config.ascii_art.min_chars):
                    continue
                spans.update(inline_code_spans(ln))
                spans.update(urls(ln) if not ei.code_like[k] else [])
            lost_spans = [s for s, n in spans.items() if p.ru.count(s) < n]
            if lost_spans:
                yield self.reason(
                    "inline",
                    f"{len(lost_spans)} inline code span(s)/URL(s) not kept verbatim, e.g. {clip(lost_spans[0], 40)!r}",
                )
