"""threatscope: telemetry of many organisations -> detections, sources, campaigns, period report.

The pipeline has one package per stage, each with a small public surface::

    from threatscope.workspace import Workspace
    from threatscope import ingest, detect, enrich, analyze, report

    ws = Workspace.open("threatscope-ws", create=True)
    ingest.ingest_paths(ws, ["logs/"])
    detect.run_detect(ws)
    enrich.run_enrich(ws)
    metrics = analyze.analyze(ws, analyze.parse_period("2018Q2", ws))
    report.write_report(metrics, "out/")
"""

__version__ = "0.1.0"
