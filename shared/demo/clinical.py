"""Synthetic clinical notes: one self-contained record per fictitious patient encounter.

A seeded generator picks a patient, a presenting condition, vitals and labs that
fit it, and writes one of five note types (progress note, discharge summary,
emergency department note, clinic letter, consultation). Every person, hospital
and identifier is invented; the same seed gives the same notes.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from organfed.shared.demo import clinical_lexicon as lex
from organfed.shared.demo.records import Record


@dataclass(frozen=True)
class Encounter:
    """Everything one note says about one patient on one day."""

    name: str
    sex: str
    age: int
    mrn: str
    date: dt.date
    hospital: str
    clinician: str
    occupation: str
    condition: lex.Condition
    comorbidities: tuple[lex.Comorbidity, ...]
    allergy: str
    smoking: str
    complaints: tuple[str, ...]
    history: tuple[str, ...]
    findings: tuple[str, ...]
    investigations: tuple[str, ...]
    plans: tuple[str, ...]
    drugs: tuple[str, ...]
    vitals: dict[str, float]
    labs: tuple[str, ...]
    days: int


def clinical_records(*, chars: int, seed: int) -> list[Record]:
    """Notes until their text reaches ``chars`` characters; ids ``note-000000`` upward."""
    rng = random.Random(seed)
    records: list[Record] = []
    size = 0
    while size < chars:
        encounter = _encounter(rng)
        write = rng.choice(_NOTE_WRITERS)
        records.append(Record(f"note-{len(records):06d}", write(encounter, rng)))
        size += len(records[-1].text)
    return records


def _encounter(rng: random.Random) -> Encounter:
    condition = rng.choice(lex.CONDITIONS)
    sex = rng.choice("FM")
    age = rng.randint(19, 94)
    comorbidities = tuple(rng.sample(lex.COMORBIDITIES, rng.randint(0, 1 + age // 30)))
    vitals = {k: rng.uniform(*condition.vitals.get(k, normal)) for k, normal in lex.NORMAL_VITALS.items()}
    lab_keys = dict.fromkeys(lex.ROUTINE_LABS + tuple(condition.labs))
    return Encounter(
        name=f"{rng.choice(lex.FIRST_NAMES[sex])} {rng.choice(lex.SURNAMES)}",
        sex=sex,
        age=age,
        mrn=f"{rng.randint(10_000_000, 99_999_999)}",
        date=dt.date(2018, 1, 1) + dt.timedelta(days=rng.randrange(7 * 365)),
        hospital=rng.choice(lex.HOSPITALS),
        clinician=f"Dr {rng.choice('ABCDEFGHJKLMNPRSTW')}. {rng.choice(lex.SURNAMES)}",
        occupation=rng.choice(lex.OCCUPATIONS),
        condition=condition,
        comorbidities=comorbidities,
        allergy=rng.choice(lex.ALLERGIES),
        smoking=rng.choice(
            ("never smoked", "ex-smoker, quit 10 years ago", f"smokes {rng.randint(5, 30)} cigarettes a day")),
        complaints=tuple(rng.sample(condition.complaints, min(len(condition.complaints), rng.randint(2, 3)))),
        history=tuple(rng.sample(condition.history, rng.randint(1, len(condition.history)))),
        findings=tuple(rng.sample(condition.findings, rng.randint(2, len(condition.findings)))),
        investigations=tuple(rng.sample(condition.investigations, rng.randint(1, len(condition.investigations)))),
        plans=tuple(rng.sample(condition.plans, rng.randint(2, len(condition.plans)))),
        drugs=tuple(_prescription(lex.DRUGS[d], rng) for d in condition.drugs if rng.random() < 0.8) or (
            _prescription(lex.DRUGS[condition.drugs[0]], rng),),
        vitals=vitals,
        labs=tuple(_lab(k, condition.labs.get(k), rng) for k in lab_keys if k in condition.labs or rng.random() < 0.7),
        days=rng.randint(2, 9),
    )


def _prescription(drug: lex.Drug, rng: random.Random) -> str:
    return " ".join(p for p in (drug.name, rng.choice(drug.doses), drug.route, rng.choice(drug.frequencies)) if p)


def _lab(key: str, abnormal: lex.Range | None, rng: random.Random) -> str:
    lab = lex.LABS[key]
    value = rng.uniform(*(abnormal or lab.normal))
    flag = " (H)" if value > lab.normal[1] else " (L)" if value < lab.normal[0] else ""
    return f"{lab.name} {value:.{lab.decimals}f} {lab.unit}{flag}"


def _vitals(e: Encounter, rng: random.Random) -> str:
    v = e.vitals
    oxygen = "room air" if v["spo2"] >= 93 else f"{rng.choice((2, 3, 4))} L/min nasal cannula"
    if rng.random() < 0.5:
        return (f"T {v['temp']:.1f} °C, HR {v['hr']:.0f}, BP {v['sbp']:.0f}/{v['dbp']:.0f}, "
                f"RR {v['rr']:.0f}, SpO2 {v['spo2']:.0f}% on {oxygen}")
    return (f"Temp {v['temp']:.1f} C | Pulse {v['hr']:.0f} bpm | BP {v['sbp']:.0f}/{v['dbp']:.0f} mmHg | "
            f"Resp {v['rr']:.0f}/min | Sats {v['spo2']:.0f}% ({oxygen})")


def _pronoun(e: Encounter) -> str:
    return "She" if e.sex == "F" else "He"


def _person(e: Encounter) -> str:
    return f"{e.age}-year-old {'woman' if e.sex == 'F' else 'man'}"


def _pmh(e: Encounter) -> str:
    return "; ".join(f"{c.name} ({c.icd10})" for c in e.comorbidities) or "nil of note"


def _home_meds(e: Encounter, rng: random.Random) -> list[str]:
    return [_prescription(lex.DRUGS[c.drug], rng) for c in e.comorbidities]


def _hpi(e: Encounter, rng: random.Random) -> str:
    duration = rng.choice(("2 days", "3 days", "a week", "24 hours", "5 days", "several hours"))
    background = f" with a background of {', '.join(c.name for c in e.comorbidities)}" if e.comorbidities else ""
    opening = rng.choice((
        f"{e.name.split()[0]} is a {_person(e)}{background} who presents with {duration} of {_join(e.complaints)}.",
        f"{_person(e).capitalize()}{background}, {e.occupation}, referred with {_join(e.complaints)} over {duration}.",
        f"This {_person(e)}{background} reports {_join(e.complaints)} for {duration}.",
    ))
    return f"{opening} Notable history includes {_join(e.history)}. {e.smoking.capitalize()}."


def _join(items: tuple[str, ...] | list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _header(title: str, e: Encounter) -> str:
    sex = "F" if e.sex == "F" else "M"
    return (f"{title}\n{e.hospital}\nPatient: {e.name}   Age/Sex: {e.age}/{sex}   MRN: {e.mrn}\n"
            f"Date: {e.date.isoformat()}   Clinician: {e.clinician} ({e.condition.specialty})")


def _progress_note(e: Encounter, rng: random.Random) -> str:
    subjective = rng.choice(("Feels a little better today.", "Slept poorly overnight.", "No new complaints.",
                             "Still symptomatic but eating and drinking.", "Reports improvement since admission."))
    plan = [f"- {p}" for p in e.plans] + [f"- continue {d}" for d in e.drugs]
    return "\n".join((
        _header("PROGRESS NOTE", e), f"Hospital day {rng.randint(1, e.days)}",
        f"S: {subjective} {_join(e.complaints).capitalize()} persisting.",
        f"O: {_vitals(e, rng)}.", f"   Exam: {'; '.join(e.findings)}.", f"   Labs: {', '.join(e.labs)}.",
        f"A: {e.condition.name.capitalize()} ({e.condition.icd10}). PMH: {_pmh(e)}.",
        "P:", *plan,
    ))


def _discharge_summary(e: Encounter, rng: random.Random) -> str:
    discharge = e.date + dt.timedelta(days=e.days)
    meds = [f"  NEW: {d}" for d in e.drugs] + [f"  CONTINUED: {m}" for m in _home_meds(e, rng)]
    course = (f"{_pronoun(e)} was admitted under {e.condition.specialty} and treated for "
              f"{e.condition.name}. {' '.join(e.investigations)} {_pronoun(e)} improved steadily and was "
              f"{rng.choice(('mobile independently', 'eating and drinking normally', 'afebrile for 48 hours'))} "
              f"at discharge.")
    return "\n".join((
        _header("DISCHARGE SUMMARY", e),
        f"Admitted: {e.date.isoformat()}   Discharged: {discharge.isoformat()}   Length of stay: {e.days} days",
        f"Principal diagnosis: {e.condition.name} ({e.condition.icd10})",
        f"Secondary diagnoses: {_pmh(e)}", f"Allergies: {e.allergy}",
        f"Presenting complaint: {_hpi(e, rng)}", f"Hospital course: {course}",
        f"Results: {', '.join(e.labs)}.", "Discharge medications:", *meds,
        "Follow-up: " + "; ".join(e.plans[:2])
        + f"; GP review in {rng.choice(('1 week', '2 weeks', '4 weeks', '6 weeks'))}.",
    ))


def _ed_note(e: Encounter, rng: random.Random) -> str:
    triage = rng.choice(("2 (very urgent)", "3 (urgent)", "3 (urgent)", "4 (standard)"))
    disposition = rng.choice((f"admitted under {e.condition.specialty}", "discharged home with follow-up",
                              "transferred to the observation unit"))
    return "\n".join((
        _header("EMERGENCY DEPARTMENT NOTE", e), f"Triage category: {triage}",
        f"Chief complaint: {e.complaints[0]}", f"HPI: {_hpi(e, rng)}", f"PMH: {_pmh(e)}",
        f"Medications: {'; '.join(_home_meds(e, rng)) or 'none'}", f"Allergies: {e.allergy}",
        f"Observations: {_vitals(e, rng)}", f"Examination: {'; '.join(e.findings)}.",
        f"Investigations: {', '.join(e.labs)}. {' '.join(e.investigations)}",
        f"Impression: {e.condition.name} ({e.condition.icd10}).",
        f"ED course: given {'; '.join(e.drugs)}.", f"Disposition: {disposition}.",
    ))


def _clinic_letter(e: Encounter, rng: random.Random) -> str:
    gp = f"Dr {rng.choice('ABCDEFGHJKLMNPRSTW')}. {rng.choice(lex.SURNAMES)}"
    return "\n".join((
        f"{e.hospital}, {e.condition.specialty} Outpatient Clinic",
        f"Clinic date: {e.date.day} {_MONTHS[e.date.month - 1]} {e.date.year}", "",
        f"Dear {gp},", "", f"Re: {e.name}, MRN {e.mrn}", "",
        f"Thank you for referring this {_person(e)}, {e.occupation}, whom I saw in clinic today. {_hpi(e, rng)}",
        f"On examination: {'; '.join(e.findings)}. {_vitals(e, rng)}.",
        f"Recent results: {', '.join(e.labs)}. {' '.join(e.investigations)}",
        f"Diagnosis: {e.condition.name} ({e.condition.icd10}).",
        f"I have started {_join(list(e.drugs))}. Plan: {'; '.join(e.plans)}.",
        f"I will review {e.name.split()[0]} again in {rng.choice(('six weeks', 'three months', 'two months'))}.",
        "", "Yours sincerely,", e.clinician, f"Consultant, {e.condition.specialty}",
    ))


def _consult_note(e: Encounter, rng: random.Random) -> str:
    asking = rng.choice(("General Surgery", "Internal Medicine", "Orthopaedics", "Emergency Medicine", "Geriatrics"))
    recommendations = [f"{i}. {item}" for i, item in enumerate((*e.plans, *(f"start {d}" for d in e.drugs)), 1)]
    return "\n".join((
        _header(f"{e.condition.specialty.upper()} CONSULTATION", e),
        f"Requested by: {asking}", f"Reason for consultation: {e.complaints[0]}",
        f"History: {_hpi(e, rng)}", f"Background: {_pmh(e)}. Allergies: {e.allergy}.",
        f"Findings: {'; '.join(e.findings)}. {_vitals(e, rng)}.", f"Data: {', '.join(e.labs)}.",
        f"Impression: findings consistent with {e.condition.name} ({e.condition.icd10}).",
        "Recommendations:", *recommendations,
        f"Thank you for this consult; we will follow. {e.clinician}",
    ))


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # not strftime: the output must not depend on the locale
_NOTE_WRITERS = (_progress_note, _discharge_summary, _ed_note, _clinic_letter, _consult_note)
