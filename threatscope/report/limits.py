"""How much of a long list the HTML and Markdown reports show. The rest stays in report.json and
tables/*.csv, and the report says how many more there are and where.

A quarter with thousands of campaigns (every exploit kit a campaign key) must still open in a
browser and print: each campaign's timeline is a section with a chart, so those are capped
first; the campaign table is capped like every change table (50 rows, in the template).
"""

from __future__ import annotations

TIMELINE_CAMPAIGNS = 25  # campaigns with a timeline section (facts and a chart), the top ones


def more_campaigns(campaigns: list) -> int:
    """How many campaigns get no timeline section (0 when all of them do)."""
    return max(0, len(campaigns) - TIMELINE_CAMPAIGNS)
