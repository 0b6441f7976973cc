"""Model output to HTML: Markdown (tables, task lists, footnotes, fenced code highlighted by
Pygments with a Copy code button, math as MathML), then sanitized.

Math (`$…$`, `$$…$$`) is converted here, on the server, by latex2mathml: the browser shows MathML
itself, with no script. Money amounts stay text: `$5 and $10` is not math (no space may follow
the opening `$` or precede the closing one, and no digit may follow the closing one).

Model output is untrusted: raw HTML in it is escaped by the parser, and nh3 removes anything that
is not on the allow-list afterwards, so nothing a model writes can run in a page. Images are left out on purpose: an image URL
written by a model can carry conversation text to a third party the moment the page loads.
"""

from __future__ import annotations

import hashlib
from functools import cache, lru_cache

import nh3
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from latex2mathml.converter import convert as latex_to_mathml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_formatter = HtmlFormatter(nowrap=True)

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "span", "div",
    "sup", "sub", "section", "input",
} | {  # MathML's presentation elements, as latex2mathml writes them (none can load or run anything)
    "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msup", "msub",
    "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mstyle",
    "mpadded", "mphantom", "menclose", "merror", "mmultiscripts", "mprescripts", "none",
}
MATH_ATTRIBUTES = {"mathvariant", "displaystyle", "scriptlevel", "stretchy", "fence", "separator", "lspace",
                   "rspace", "largeop", "movablelimits", "symmetric", "minsize", "maxsize", "form", "accent",
                   "accentunder", "linethickness", "notation", "columnalign", "rowalign", "columnspacing",
                   "rowspacing", "columnlines", "rowlines", "frame", "width", "height", "depth", "voffset", "encoding"}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "id", "class"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "sup": {"class"},
    "hr": {"class"},
    "section": {"class"},
    "ul": {"class"},
    "li": {"class", "id"},
    "input": {"class", "type", "checked", "disabled"},
    "math": {"display", "xmlns"},
    **{tag: MATH_ATTRIBUTES for tag in ("mi", "mn", "mo", "mtext", "mspace", "mfrac", "mover", "munder", "munderover",
                                         "mtable", "mtr", "mtd", "mstyle", "mpadded", "menclose", "annotation")},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
}


def _highlight(code: str, lang: str, _attrs) -> str:
    try:
        lexer = get_lexer_by_name(lang.strip()) if lang.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes it itself
    return highlight(code, lexer, _formatter)


def _math(latex: str, options: dict) -> str:
    try:
        return latex_to_mathml(latex, display="block" if options.get("display_mode") else "inline")
    except Exception:  # latex2mathml raises many kinds on bad input: shown as written
        return f"<code>{escape(latex)}</code>"


CODE_BLOCK = '<div class="code-block">'
# Put in after sanitizing (the allow-list has no buttons); raw HTML from a model is escaped by the
# parser, so CODE_BLOCK only ever comes from the fence rule below.
COPY_CODE = CODE_BLOCK + '<button type="button" class="link copy-code" data-copy-code>Copy code</button>'


@cache
def _parser() -> MarkdownIt:
    # html=False: raw HTML in model output is shown as text, never parsed as markup.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight}).enable(
        ["table", "strikethrough"]
    )
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, renderer=_math)
    md.use(tasklists_plugin).use(footnote_plugin)
    for rule in ("fence", "code_block"):
        plain = md.renderer.rules[rule]
        md.renderer.rules[rule] = lambda tokens, idx, options, env, plain=plain: CODE_BLOCK + plain(tokens, idx, options, env) + "</div>"
    return md


# Rendering a reply costs milliseconds (Pygments, MathML, nh3) and a page shows dozens: the
# latest replies' HTML is kept per process. Bounded: RENDER_CACHE_ENTRIES texts of at most
# RENDER_CACHE_CHARS each (a few MB at most); longer ones are rendered every time.
RENDER_CACHE_ENTRIES = 256
RENDER_CACHE_CHARS = 16_000


def render_markdown(text: str) -> SafeString:
    return _render_cached(text) if len(text) <= RENDER_CACHE_CHARS else _render(text)


@lru_cache(maxsize=RENDER_CACHE_ENTRIES)
def _render_cached(text: str) -> SafeString:
    return _render(text)


def _render(text: str) -> SafeString:
    # Footnote anchors are named after the text, so that two replies on a page do not share them.
    html = _parser().render(text, {"docId": hashlib.blake2s(text.encode(), digest_size=4).hexdigest()})
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
        set_tag_attribute_values={"input": {"type": "checkbox", "disabled": "disabled"}},
    )
    return mark_safe(clean.replace(CODE_BLOCK, COPY_CODE))  # noqa: S308 - sanitized by nh3 just above


def render_plain(text: str) -> SafeString:
    """Escaped text, for replies still streaming (rendered as Markdown once complete)."""
    return escape(text)
