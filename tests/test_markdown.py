"""Replies as HTML: math as MathML, tables, task lists, footnotes, Copy code; nothing scriptable."""

from __future__ import annotations

import re

from conversations.markdown import render_markdown


def test_math_becomes_mathml_inline_and_as_a_block():
    html = render_markdown("Euler: $e^{i\\pi}+1=0$\n\n$$\\frac{a}{b}$$")
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">' in html
    assert "<msup><mi>e</mi>" in html and "<mi>π</mi>" in html
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in html and "<mfrac>" in html


def test_money_is_not_math():
    html = render_markdown("It costs $5 and $10, or $ 3 $.")
    assert "<math" not in html and "$5 and $10" in html


def test_math_that_does_not_parse_is_shown_as_written():
    html = render_markdown("$\\frac{$")
    assert "<math" not in html and "<code>\\frac{</code>" in html


def test_nothing_in_math_can_link_or_run():
    html = render_markdown("$\\href{javascript:alert(1)}{x}$ $\\style{color:red}{y}$ $<img src=x onerror=alert(1)>$")
    assert "javascript" not in html and "href" not in html and "onerror" not in html
    assert "<img" not in html and "style=" not in html and html.count("<math") == 3


def test_tables_task_lists_and_footnotes():
    html = render_markdown("| a | b |\n|---|--:|\n| 1 | 2 |\n\n- [x] done\n- [ ] todo\n\nSee[^n].\n\n[^n]: The note.")
    assert "<table>" in html and '<td style="text-align:right">2</td>' in html
    boxes = re.findall(r"<input[^>]*>", html)
    assert len(boxes) == 2 and all('disabled' in b and 'type="checkbox"' in b for b in boxes)
    assert 'checked' in boxes[0] and 'checked' not in boxes[1]
    ref = re.search(r'<a href="#(fn-[0-9a-f]+-1)"', html).group(1)
    assert f'<li id="{ref}" class="footnote-item">' in html and "The note." in html


def test_every_code_block_has_a_copy_code_button_and_raw_html_gets_none():
    html = render_markdown("```python\nprint(1)\n```\n\n    indented\n\n<div class=\"code-block\">fake</div>")
    assert html.count('data-copy-code>Copy code</button>') == 2
    assert '&lt;div class="code-block"&gt;fake' in html
