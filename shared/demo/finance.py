"""Synthetic finance documents of fictitious firms: one record per document.

Four document types from a seeded generator: quarterly management reports,
general-ledger journal extracts (every entry balances), budget variance memos and
loan covenant compliance certificates. Figures are internally consistent (totals,
margins, ratios are computed, not invented). Every firm, bank and person is
invented; the same seed gives the same documents.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from organfed.shared.demo.records import Record

_NAMES = ("Aldermoor", "Brightwater", "Corven", "Dunmore", "Eastgate", "Fenwick", "Galloway", "Harrowfield",
          "Ironbridge", "Juniper", "Kilbride", "Larkspur", "Marlow", "Northam", "Oakhurst", "Penrose", "Redfern",
          "Silverbirch", "Thistledown", "Underwood", "Vantage", "Westmere", "Yarrow", "Zephyr")
_SECTORS = ("Logistics", "Foods", "Components", "Retail", "Software", "Pharma", "Textiles", "Energy",
            "Hospitality", "Engineering", "Packaging", "Media")
_LEGAL_FORMS = (("Ltd", "GBP"), ("plc", "GBP"), ("GmbH", "EUR"), ("S.A.", "EUR"), ("Inc.", "USD"), ("B.V.", "EUR"))
_PEOPLE = ("A. Moreau", "J. Okonkwo", "S. Lindgren", "M. Castellano", "R. Nakagawa", "E. Brannigan", "T. Haddad",
           "L. Kowalski", "D. Mensah", "K. Fitzroy", "N. Varga", "P. Quintana", "H. Sato", "C. Adebayo")
_BANKS = ("Meridian Commercial Bank", "Northgate Savings & Loan", "Banque Aurelle", "Stonebridge Capital",
          "Hanseatic Handelsbank")
_COUNTERPARTIES = ("Northwind Traders", "Bluefin Supplies", "Castleford Freight", "Delta Office Services",
                   "Evergreen Packaging", "Falcon IT Solutions", "Granite Facilities", "Harbour Wholesale",
                   "Ivy Consulting", "Jasper Utilities")
_ACCOUNTS = {
    1000: "Cash at bank", 1100: "Accounts receivable", 1200: "Inventory", 1510: "Accumulated depreciation",
    2000: "Accounts payable", 2100: "Accrued expenses", 2200: "VAT payable", 2300: "Payroll liabilities",
    4000: "Sales revenue", 5000: "Cost of goods sold", 6000: "Salaries and wages", 6100: "Rent",
    6300: "Marketing", 6500: "Depreciation expense", 6600: "Professional fees", 7000: "Interest expense",
}
_DRIVERS = ("higher volumes in the wholesale channel", "price increases implemented in the prior quarter",
            "the full-quarter contribution of the new distribution centre", "strong demand from export customers",
            "the launch of the subscription tier", "recovery in the hospitality segment")
_MARGIN_UP = ("lower freight costs", "a favourable product mix", "easing raw material prices", "procurement savings")
_MARGIN_DOWN = ("higher energy costs", "temporary discounting to clear inventory", "an adverse product mix",
                "supplier price increases")
_SAVINGS = ("delayed hiring", "lower travel costs", "projects deferred to next quarter",
            "renegotiated supplier contracts", "lower energy usage", "a release of prior-year accruals")
_OPEX_REASONS = ("wage inflation", "investment in the sales team", "higher IT licence costs",
                 "one-off restructuring charges", "increased marketing spend", "new office rent")


@dataclass(frozen=True)
class Firm:
    """A fictitious company: name, reporting currency and the size of its quarterly revenue (thousands)."""

    name: str
    currency: str
    revenue: float


def finance_records(*, chars: int, seed: int) -> list[Record]:
    """Documents until their text reaches ``chars`` characters; ids ``doc-000000`` upward."""
    rng = random.Random(seed)
    records: list[Record] = []
    size = 0
    while size < chars:
        form, currency = rng.choice(_LEGAL_FORMS)
        firm = Firm(f"{rng.choice(_NAMES)} {rng.choice(_SECTORS)} {form}", currency, rng.uniform(2_000, 90_000))
        date = dt.date(2018, 1, 1) + dt.timedelta(days=rng.randrange(7 * 365))
        write = rng.choice(_WRITERS)
        records.append(Record(f"doc-{len(records):06d}", write(firm, date, rng)))
        size += len(records[-1].text)
    return records


def _money(value: float, decimals: int = 0) -> str:
    """Accounting style: thousands separators, negatives in parentheses."""
    text = f"{abs(value):,.{decimals}f}"
    return f"({text})" if value < 0 else text


def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.1f}%"


def _management_report(firm: Firm, date: dt.date, rng: random.Random) -> str:
    quarter = (date.month - 1) // 3 + 1
    growth, prior_margin = rng.uniform(-0.08, 0.18), rng.uniform(0.22, 0.55)
    margin = prior_margin + rng.uniform(-0.03, 0.03)
    rev_now, rev_old = firm.revenue, firm.revenue / (1 + growth)
    rows: list[tuple[str, float, float]] = [("Revenue", rev_now, rev_old)]
    rows.append(("Cost of sales", -rev_now * (1 - margin), -rev_old * (1 - prior_margin)))
    rows.append(("Gross profit", rows[0][1] + rows[1][1], rows[0][2] + rows[1][2]))
    opex_share = rng.uniform(0.12, min(0.2, prior_margin - 0.05))
    rows.append(("Operating expenses", -rev_now * opex_share * rng.uniform(0.95, 1.08), -rev_old * opex_share))
    rows.append(("EBITDA", rows[2][1] + rows[3][1], rows[2][2] + rows[3][2]))
    rows.append(("Depreciation and amortisation", -rev_now * 0.03, -rev_old * 0.03))
    rows.append(("Operating profit", rows[4][1] + rows[5][1], rows[4][2] + rows[5][2]))
    rows.append(("Net finance costs", -rev_now * rng.uniform(0.004, 0.02), -rev_old * 0.01))
    rows.append(("Profit before tax", rows[6][1] + rows[7][1], rows[6][2] + rows[7][2]))
    tax = rng.choice((0.19, 0.21, 0.25, 0.30))
    rows.append((f"Income tax ({tax:.0%})", -rows[8][1] * tax, -rows[8][2] * tax))
    rows.append(("Net profit", rows[8][1] + rows[9][1], rows[8][2] + rows[9][2]))
    table = [f"{'':32}{'Q%d %d' % (quarter, date.year):>12}{'Q%d %d' % (quarter, date.year - 1):>12}{'Change':>10}"]
    table += [f"{label:32}{_money(now):>12}{_money(old):>12}{_pct(abs(now), abs(old)):>10}" for label, now, old in rows]
    ebitda, net_debt = rows[4][1], rows[4][1] * 4 * rng.uniform(0.4, 3.2)
    dso, dio = rng.randint(28, 75), rng.randint(20, 110)
    direction = "improved" if margin >= prior_margin else "declined"
    approved = dt.date(date.year, 3 * quarter, 28) + dt.timedelta(days=rng.randint(14, 40))
    return "\n".join((
        f"{firm.name} — Management report, Q{quarter} FY{date.year}",
        f"All figures in {firm.currency} thousands unless stated otherwise. Unaudited.", "",
        *table, "",
        f"Gross margin {margin:.1%} (prior year {prior_margin:.1%}); EBITDA margin {ebitda / rev_now:.1%}.",
        f"Revenue {'rose' if growth >= 0 else 'fell'} {abs(growth):.1%} year on year to {firm.currency} "
        f"{rev_now / 1000:,.1f} million, {'driven by' if growth >= 0 else 'despite'} {rng.choice(_DRIVERS)}.",
        f"Gross margin {direction} by {abs(margin - prior_margin) * 100:.1f} percentage points, reflecting "
        f"{rng.choice(_MARGIN_UP if margin >= prior_margin else _MARGIN_DOWN)}. "
        f"Operating expenses moved with {rng.choice(_OPEX_REASONS)}.",
        f"Working capital: receivables {dso} days sales outstanding, inventory {dio} days. Net debt closed the "
        f"quarter at {firm.currency} {net_debt / 1000:,.1f} million, {net_debt / (ebitda * 4):.1f}x annualised EBITDA.",
        f"Outlook: the board {rng.choice(('maintains', 'raises', 'narrows', 'lowers'))} full-year revenue guidance of "
        f"{firm.currency} {rev_now * 3.8 / 1000:,.0f}-{rev_now * 4.2 / 1000:,.0f} million.",
        f"Approved by {rng.choice(_PEOPLE)}, Chief Financial Officer, on {approved.isoformat()}.",
    ))


def _journal_extract(firm: Firm, date: dt.date, rng: random.Random) -> str:
    lines = ["GENERAL LEDGER — JOURNAL EXTRACT", f"Entity: {firm.name} ({firm.currency})   "
             f"Period: {date.year}-{date.month:02d}   Prepared by: {rng.choice(_PEOPLE)}", ""]
    entries = sorted((date.replace(day=rng.randint(1, 28)), rng.randint(1000, 9999), *_journal_entry(rng))
                     for _ in range(rng.randint(5, 9)))
    totals = {"DR": 0.0, "CR": 0.0}
    for day, number, memo, legs in entries:
        lines.append(f"JE-{day.year}-{day.month:02d}-{number}  {day.isoformat()}  {memo}")
        for side, account, amount in legs:
            column = f"{_money(amount, 2):>14}" if side == "DR" else f"{'':14}{_money(amount, 2):>14}"
            lines.append(f"    {side} {account} {_ACCOUNTS[account]:28}{column}")
            totals[side] += amount
    balanced = round(totals["DR"], 2) == round(totals["CR"], 2)
    lines += ["", f"Totals: DR {_money(totals['DR'], 2)}  CR {_money(totals['CR'], 2)}  "
                  f"({'balanced' if balanced else 'OUT OF BALANCE'})",
              f"Reviewed by {rng.choice(_PEOPLE)}, Financial Controller."]
    return "\n".join(lines)


def _journal_entry(rng: random.Random) -> tuple[str, list[tuple[str, int, float]]]:
    """One balanced entry: a memo and (side, account, amount) legs."""
    net = round(rng.uniform(300, 60_000), 2)
    vat = round(net * rng.choice((0.2, 0.19, 0.21)), 2)
    who = rng.choice(_COUNTERPARTIES)
    kind = rng.randrange(8)
    if kind == 0:
        return f"Sales invoice INV-{rng.randint(10000, 99999)} to {who}", [
            ("DR", 1100, net + vat), ("CR", 4000, net), ("CR", 2200, vat)]
    if kind == 1:
        return f"Receipt from {who}, remittance {rng.randint(100000, 999999)}", [("DR", 1000, net), ("CR", 1100, net)]
    if kind == 2:
        return f"Purchase invoice {rng.randint(1000, 9999)}/{who.split()[0][:3].upper()} from {who}", [
            ("DR", 1200, net), ("DR", 2200, vat), ("CR", 2000, net + vat)]
    if kind == 3:
        return f"Payment run to {who}", [("DR", 2000, net), ("CR", 1000, net)]
    if kind == 4:
        withheld = round(net * rng.uniform(0.22, 0.34), 2)
        return "Monthly payroll", [("DR", 6000, net), ("CR", 2300, withheld), ("CR", 1000, round(net - withheld, 2))]
    if kind == 5:
        return "Monthly depreciation charge", [("DR", 6500, net), ("CR", 1510, net)]
    if kind == 6:
        return f"Accrual for {rng.choice(('audit fees', 'legal fees', 'consultancy'))} ({who})", [
            ("DR", 6600, net), ("CR", 2100, net)]
    return "Cost of goods sold for despatched orders", [("DR", 5000, net), ("CR", 1200, net)]


def _variance_memo(firm: Firm, date: dt.date, rng: random.Random) -> str:
    centres = rng.sample(("Sales", "Marketing", "Operations", "IT", "Finance", "HR", "Logistics", "Facilities",
                          "Research and development", "Customer service"), rng.randint(5, 8))
    rows, notes = [], []
    for centre in centres:
        budget = round(rng.uniform(40_000, 900_000), -2)
        actual = round(budget * rng.uniform(0.82, 1.22), -2)
        variance = budget - actual
        rows.append(f"{centre:26}{_money(budget):>12}{_money(actual):>12}{_money(variance):>12}"
                    f"{abs(variance) / budget:>8.1%} {'F' if variance >= 0 else 'A'}")
        if abs(variance) / budget > 0.1:
            notes.append(f"{centre} was {abs(variance) / budget:.1%} {'under' if variance >= 0 else 'over'} budget "
                         f"({firm.currency} {_money(abs(variance))} {'favourable' if variance >= 0 else 'adverse'}), "
                         f"mainly due to {rng.choice(_SAVINGS if variance >= 0 else _OPEX_REASONS)}.")
    notes = notes or ["No cost centre deviated from budget by more than 10%."]
    return "\n".join((
        f"MEMO — Budget variance analysis, {date.year}-{date.month:02d}",
        f"To: Finance Director   From: {rng.choice(_PEOPLE)}, Financial Controller", f"Entity: {firm.name}",
        f"Currency: {firm.currency}; F = favourable, A = adverse.", "",
        f"{'Cost centre':26}{'Budget':>12}{'Actual':>12}{'Variance':>12}{'Var %':>8}", *rows, "",
        "Key variances:", *(f"{i}. {note}" for i, note in enumerate(notes, 1)),
    ))


def _compliance_certificate(firm: Firm, date: dt.date, rng: random.Random) -> str:
    ebitda = firm.revenue * 4 * rng.uniform(0.08, 0.22)
    net_debt, finance = ebitda * rng.uniform(0.5, 3.6), ebitda * rng.uniform(0.08, 0.35)
    leverage, cover, limit_l, limit_c = net_debt / ebitda, ebitda / finance, rng.choice((3.0, 3.5)), 4.0
    ok = leverage <= limit_l and cover >= limit_c
    signed = date + dt.timedelta(days=rng.randint(20, 45))
    return "\n".join((
        "COMPLIANCE CERTIFICATE",
        f"To: {rng.choice(_BANKS)} as Agent   From: {firm.name}   Test date: {date.isoformat()}",
        f"We refer to the facility agreement dated {date.year - rng.randint(1, 4)}-{rng.randint(1, 12):02d}-15 (the "
        f"\"Agreement\"). Terms defined in the Agreement have the same meaning in this certificate.",
        f"We confirm that for the Relevant Period ending on the test date:",
        f"(a) Leverage: Net Debt of {firm.currency} {_money(net_debt)}k to EBITDA of {firm.currency} {_money(ebitda)}k "
        f"is {leverage:.2f}x (maximum {limit_l:.2f}x): {'complies' if leverage <= limit_l else 'BREACH'}.",
        f"(b) Interest cover: EBITDA to Net Finance Charges of {firm.currency} {_money(finance)}k is {cover:.2f}x "
        f"(minimum {limit_c:.2f}x): {'complies' if cover >= limit_c else 'BREACH'}.",
        "(c) No Default is continuing." if ok else
        "(c) A Default is continuing; we propose a remedy in the attached letter and request a waiver.",
        f"Signed for and on behalf of {firm.name} by {rng.choice(_PEOPLE)}, Chief Financial Officer, "
        f"on {signed.isoformat()}.",
    ))


_WRITERS = (_management_report, _journal_extract, _variance_memo, _compliance_certificate)
