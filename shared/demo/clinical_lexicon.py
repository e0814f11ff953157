"""Vocabulary of the synthetic clinical notes: conditions, drugs, labs and people (all fictitious).

Data only. The tables are written by the organfed developers for the demo; the
drug doses and lab ranges are plausible, not clinical guidance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Range = tuple[float, float]


@dataclass(frozen=True)
class Drug:
    """A prescribable drug: name, dose options, route and frequency options."""

    name: str
    doses: tuple[str, ...]
    route: str
    frequencies: tuple[str, ...]


@dataclass(frozen=True)
class Condition:
    """A presenting problem and everything a note about it may mention."""

    name: str
    icd10: str
    specialty: str
    complaints: tuple[str, ...]
    history: tuple[str, ...]
    findings: tuple[str, ...]
    investigations: tuple[str, ...]
    drugs: tuple[str, ...]
    plans: tuple[str, ...]
    labs: dict[str, Range] = field(default_factory=dict)
    vitals: dict[str, Range] = field(default_factory=dict)


@dataclass(frozen=True)
class Comorbidity:
    """A chronic problem for the past medical history, with its usual long-term drug."""

    name: str
    icd10: str
    drug: str


@dataclass(frozen=True)
class Lab:
    """A laboratory test: display name, unit, reference range, decimals."""

    name: str
    unit: str
    normal: Range
    decimals: int


LABS = {
    "WBC": Lab("WBC", "x10^9/L", (4.0, 11.0), 1),
    "Hb": Lab("Hb", "g/dL", (12.0, 16.0), 1),
    "Plt": Lab("Platelets", "x10^9/L", (150, 400), 0),
    "Na": Lab("Na", "mmol/L", (135, 145), 0),
    "K": Lab("K", "mmol/L", (3.5, 5.0), 1),
    "Cr": Lab("Creatinine", "mg/dL", (0.6, 1.2), 2),
    "BUN": Lab("BUN", "mg/dL", (7, 20), 0),
    "Glu": Lab("Glucose", "mg/dL", (70, 140), 0),
    "CRP": Lab("CRP", "mg/L", (0, 5), 0),
    "HbA1c": Lab("HbA1c", "%", (4.2, 5.6), 1),
    "BNP": Lab("BNP", "pg/mL", (10, 100), 0),
    "TnI": Lab("hs-Troponin I", "ng/L", (1, 14), 0),
    "TSH": Lab("TSH", "mU/L", (0.4, 4.0), 2),
    "Ferritin": Lab("Ferritin", "ng/mL", (30, 300), 0),
    "Lactate": Lab("Lactate", "mmol/L", (0.5, 2.0), 1),
    "Lipase": Lab("Lipase", "U/L", (10, 60), 0),
    "Ddimer": Lab("D-dimer", "ng/mL FEU", (100, 500), 0),
    "ALT": Lab("ALT", "U/L", (7, 56), 0),
}
ROUTINE_LABS = ("WBC", "Hb", "Plt", "Na", "K", "Cr", "BUN", "Glu")

NORMAL_VITALS: dict[str, Range] = {
    "temp": (36.3, 37.3), "hr": (60, 92), "sbp": (108, 138), "dbp": (64, 86), "rr": (12, 18), "spo2": (95, 99),
}

DRUGS = {d.name: d for d in (
    Drug("amoxicillin-clavulanate", ("875/125 mg",), "PO", ("BID",)),
    Drug("azithromycin", ("500 mg", "250 mg"), "PO", ("daily",)),
    Drug("ceftriaxone", ("1 g", "2 g"), "IV", ("daily",)),
    Drug("doxycycline", ("100 mg",), "PO", ("BID",)),
    Drug("furosemide", ("40 mg", "80 mg", "20 mg"), "IV", ("BID", "daily")),
    Drug("bisoprolol", ("2.5 mg", "5 mg"), "PO", ("daily",)),
    Drug("ramipril", ("2.5 mg", "5 mg", "10 mg"), "PO", ("daily",)),
    Drug("spironolactone", ("25 mg",), "PO", ("daily",)),
    Drug("metformin", ("500 mg", "1 g"), "PO", ("BID",)),
    Drug("empagliflozin", ("10 mg", "25 mg"), "PO", ("daily",)),
    Drug("insulin glargine", ("10 units", "14 units", "18 units", "22 units"), "SC", ("nightly",)),
    Drug("salbutamol", ("5 mg", "2.5 mg"), "nebulised", ("every 4 hours as needed", "QID")),
    Drug("ipratropium", ("500 mcg",), "nebulised", ("QID",)),
    Drug("prednisolone", ("40 mg", "30 mg"), "PO", ("daily for 5 days",)),
    Drug("sodium chloride 0.9%", ("1 L over 8 hours", "500 mL bolus", "1 L over 6 hours"), "IV", ("",)),
    Drug("flucloxacillin", ("1 g", "500 mg"), "PO", ("QID",)),
    Drug("cefalexin", ("500 mg",), "PO", ("QID",)),
    Drug("metoprolol", ("25 mg", "50 mg"), "PO", ("BID",)),
    Drug("apixaban", ("5 mg", "2.5 mg"), "PO", ("BID",)),
    Drug("nitrofurantoin", ("100 mg",), "PO", ("BID for 5 days",)),
    Drug("ciprofloxacin", ("500 mg",), "PO", ("BID for 7 days",)),
    Drug("budesonide/formoterol", ("200/6 mcg, 2 puffs",), "inhaled", ("BID",)),
    Drug("amlodipine", ("5 mg", "10 mg"), "PO", ("daily",)),
    Drug("lisinopril", ("10 mg", "20 mg"), "PO", ("daily",)),
    Drug("rivaroxaban", ("15 mg",), "PO", ("BID for 21 days, then 20 mg daily",)),
    Drug("aspirin", ("300 mg", "81 mg"), "PO", ("daily",)),
    Drug("atorvastatin", ("80 mg", "40 mg", "20 mg"), "PO", ("nightly",)),
    Drug("cefazolin", ("2 g",), "IV", ("pre-incision",)),
    Drug("metronidazole", ("500 mg",), "IV", ("every 8 hours",)),
    Drug("ondansetron", ("4 mg",), "IV", ("every 8 hours as needed",)),
    Drug("sumatriptan", ("50 mg", "100 mg"), "PO", ("at onset, may repeat after 2 hours",)),
    Drug("ibuprofen", ("400 mg",), "PO", ("TID with food",)),
    Drug("propranolol", ("40 mg",), "PO", ("BID",)),
    Drug("morphine", ("2.5 mg", "5 mg"), "IV", ("every 4 hours as needed",)),
    Drug("piperacillin-tazobactam", ("4.5 g",), "IV", ("every 8 hours",)),
    Drug("levothyroxine", ("50 mcg", "75 mcg", "100 mcg"), "PO", ("daily before breakfast",)),
    Drug("ferrous sulfate", ("200 mg",), "PO", ("daily", "on alternate days")),
    Drug("ticagrelor", ("180 mg loading, then 90 mg",), "PO", ("BID",)),
    Drug("fondaparinux", ("2.5 mg",), "SC", ("daily",)),
    Drug("paracetamol", ("1 g",), "PO", ("QID as needed",)),
    Drug("omeprazole", ("20 mg", "40 mg"), "PO", ("daily",)),
    Drug("sertraline", ("50 mg", "100 mg"), "PO", ("daily",)),
    Drug("tiotropium", ("18 mcg",), "inhaled", ("daily",)),
    Drug("allopurinol", ("100 mg", "300 mg"), "PO", ("daily",)),
)}

CONDITIONS = (
    Condition("community-acquired pneumonia", "J18.9", "Internal Medicine",
              ("productive cough", "fever", "pleuritic chest pain", "shortness of breath"),
              ("green sputum for several days", "rigors at night", "a reduced appetite"),
              ("coarse crackles at the right base", "bronchial breathing in the left lower zone",
               "dullness to percussion at the right base"),
              ("Chest X-ray: right lower lobe consolidation.",
               "Chest X-ray: left lower zone consolidation, no effusion.", "CURB-65 score of 2."),
              ("ceftriaxone", "azithromycin", "amoxicillin-clavulanate"),
              ("step down to oral antibiotics when afebrile for 48 hours", "repeat chest X-ray in 6 weeks",
               "encourage oral fluids and mobilisation"),
              labs={"WBC": (12.5, 21.0), "CRP": (60, 280)},
              vitals={"temp": (37.9, 39.6), "hr": (96, 124), "rr": (20, 30), "spo2": (88, 94)}),
    Condition("acute decompensated heart failure", "I50.9", "Cardiology",
              ("breathlessness on exertion", "orthopnoea", "ankle swelling", "weight gain"),
              ("sleeping on three pillows", "paroxysmal nocturnal dyspnoea", "a recent excess of dietary salt"),
              ("bibasal crackles", "raised jugular venous pressure", "pitting oedema to the knees"),
              ("Chest X-ray: cardiomegaly with upper lobe diversion.",
               "Echocardiogram: ejection fraction 30%, dilated left ventricle.",
               "ECG: sinus rhythm, left bundle branch block."),
              ("furosemide", "bisoprolol", "ramipril", "spironolactone"),
              ("daily weights and strict fluid balance", "fluid restriction of 1.5 L per day",
               "titrate diuretic to a target weight loss of 1 kg per day"),
              labs={"BNP": (650, 3400), "Cr": (1.3, 2.1), "Na": (126, 133)},
              vitals={"rr": (20, 28), "spo2": (89, 94), "hr": (88, 112)}),
    Condition("type 2 diabetes mellitus with hyperglycaemia", "E11.65", "Endocrinology",
              ("polyuria", "polydipsia", "fatigue", "blurred vision"),
              ("weight loss of 4 kg over two months", "missed doses of metformin", "recurrent thrush"),
              ("no acanthosis", "reduced monofilament sensation in both feet", "no foot ulceration"),
              ("Urine ketones negative.", "Retinal screening due.", "Urine albumin-creatinine ratio 8 mg/mmol."),
              ("metformin", "empagliflozin", "insulin glargine"),
              ("structured diabetes education", "home glucose monitoring before meals", "annual foot and eye review"),
              labs={"Glu": (240, 460), "HbA1c": (8.4, 12.6)}),
    Condition("exacerbation of COPD", "J44.1", "Respiratory Medicine",
              ("worsening breathlessness", "wheeze", "increased sputum volume"),
              ("two exacerbations in the past year", "use of the reliever inhaler every hour",
               "a home oxygen assessment last winter"),
              ("widespread expiratory wheeze", "prolonged expiratory phase", "use of accessory muscles"),
              ("Arterial blood gas: pH 7.33, pCO2 52 mmHg.", "Chest X-ray: hyperinflation, no consolidation.",
               "Sputum sent for culture."),
              ("salbutamol", "ipratropium", "prednisolone", "doxycycline"),
              ("target oxygen saturations 88-92%", "refer to pulmonary rehabilitation",
               "smoking cessation advice given"),
              labs={"WBC": (11.2, 15.5)},
              vitals={"rr": (22, 30), "spo2": (85, 91), "hr": (94, 118)}),
    Condition("acute kidney injury", "N17.9", "Nephrology",
              ("reduced urine output", "nausea", "lethargy"),
              ("a recent diarrhoeal illness", "ibuprofen started last week", "poor oral intake"),
              ("dry mucous membranes", "reduced skin turgor", "no palpable bladder"),
              ("Renal ultrasound: normal-sized kidneys, no hydronephrosis.", "Urine dipstick: protein 1+.",
               "Stage 2 AKI by KDIGO criteria."),
              ("sodium chloride 0.9%",),
              ("hold nephrotoxic drugs including NSAIDs and ACE inhibitors", "strict input and output chart",
               "repeat renal function in 24 hours"),
              labs={"Cr": (2.2, 4.8), "BUN": (38, 92), "K": (5.3, 6.1)}),
    Condition("cellulitis of the lower limb", "L03.115", "Internal Medicine",
              ("red, hot, swollen leg", "fever", "pain on walking"),
              ("a small cut on the shin two weeks ago", "tinea between the toes", "redness spreading over two days"),
              ("erythema with an ill-defined margin", "tender warm skin over the shin", "no crepitus or fluctuance"),
              ("Margins marked with pen.", "Ultrasound: no collection.", "Blood cultures sent."),
              ("flucloxacillin", "cefalexin"),
              ("elevate the limb", "review the marked margins daily", "treat tinea pedis with topical antifungal"),
              labs={"WBC": (11.5, 17.0), "CRP": (40, 190)},
              vitals={"temp": (37.6, 38.9), "hr": (88, 108)}),
    Condition("atrial fibrillation with rapid ventricular response", "I48.91", "Cardiology",
              ("palpitations", "dizziness", "breathlessness"),
              ("two days of a racing heart", "no chest pain", "alcohol on most days"),
              ("irregularly irregular pulse", "no murmurs", "clear chest"),
              ("ECG: atrial fibrillation, ventricular rate 138, no acute ST changes.", "CHA2DS2-VASc score of 3.",
               "Echocardiogram requested."),
              ("metoprolol", "apixaban"),
              ("rate control target under 110 at rest", "anticoagulation discussed and started",
               "check thyroid function"),
              labs={"TSH": (0.8, 2.6)},
              vitals={"hr": (118, 162)}),
    Condition("acute pyelonephritis", "N10", "Internal Medicine",
              ("dysuria", "urinary frequency", "flank pain", "fever"),
              ("rigors overnight", "two episodes of vomiting", "a urinary tract infection last year"),
              ("costovertebral angle tenderness on the left", "suprapubic tenderness", "soft abdomen"),
              ("Urinalysis: nitrites positive, leukocytes 3+.", "Urine culture sent.",
               "Ultrasound: no hydronephrosis."),
              ("ciprofloxacin", "ceftriaxone", "nitrofurantoin"),
              ("adjust antibiotics to culture sensitivities", "encourage oral fluids", "safety-net advice for sepsis"),
              labs={"WBC": (13.0, 19.5), "CRP": (70, 240)},
              vitals={"temp": (38.2, 39.8), "hr": (98, 122)}),
    Condition("acute asthma exacerbation", "J45.901", "Respiratory Medicine",
              ("wheeze", "chest tightness", "night-time cough"),
              ("a recent viral illness", "a peak flow at 55% of best", "running out of the preventer inhaler"),
              ("bilateral polyphonic wheeze", "able to complete sentences", "no cyanosis"),
              ("Peak expiratory flow 260 L/min (best 470).", "Chest X-ray: no pneumothorax.",
               "Inhaler technique reviewed."),
              ("salbutamol", "prednisolone", "budesonide/formoterol"),
              ("written asthma action plan provided", "review inhaler adherence",
               "follow up with the asthma nurse in 2 weeks"),
              vitals={"rr": (20, 28), "spo2": (92, 96), "hr": (96, 118)}),
    Condition("essential hypertension", "I10", "General Practice",
              ("headaches", "no symptoms, raised readings at the pharmacy"),
              ("home readings averaging 156/94", "a family history of stroke", "a high-salt diet"),
              ("normal heart sounds", "no retinopathy on fundoscopy", "peripheral pulses present"),
              ("ECG: left ventricular hypertrophy by voltage criteria.", "Urine albumin-creatinine ratio normal.",
               "10-year cardiovascular risk 14%."),
              ("amlodipine", "lisinopril"),
              ("home blood pressure monitoring twice daily for a week", "reduce salt and alcohol intake",
               "recheck renal function after starting the ACE inhibitor"),
              vitals={"sbp": (152, 178), "dbp": (92, 106)}),
    Condition("deep vein thrombosis of the left leg", "I82.402", "Internal Medicine",
              ("calf pain", "leg swelling"),
              ("a long-haul flight last week", "recent knee surgery", "no previous clots"),
              ("left calf circumference 3 cm greater than the right", "pitting oedema of the left calf",
               "tenderness along the deep veins"),
              ("Wells score of 3.", "Duplex ultrasound: occlusive thrombus in the left popliteal vein.",
               "No signs of pulmonary embolism."),
              ("rivaroxaban",),
              ("anticoagulation for 3 months", "compression stockings for comfort",
               "advice about bleeding risks given"),
              labs={"Ddimer": (1100, 4200)}),
    Condition("acute ischaemic stroke", "I63.9", "Neurology",
              ("sudden right arm weakness", "slurred speech", "facial droop"),
              ("symptom onset 2 hours before arrival", "being found on the floor by a neighbour",
               "a transient episode a month ago"),
              ("right-sided weakness, power 3/5 in the arm", "expressive dysphasia", "NIHSS score of 7"),
              ("CT head: no haemorrhage.", "CT angiogram: left middle cerebral artery territory.",
               "Carotid Doppler booked."),
              ("aspirin", "atorvastatin"),
              ("swallow assessment before oral intake", "stroke unit admission",
               "physiotherapy and occupational therapy review"),
              vitals={"sbp": (150, 186)}),
    Condition("acute appendicitis", "K35.80", "General Surgery",
              ("right lower quadrant pain", "anorexia", "nausea"),
              ("pain that began around the umbilicus", "pain worse on coughing", "one episode of vomiting"),
              ("tenderness at McBurney's point", "rebound tenderness", "positive Rovsing's sign"),
              ("CT abdomen: dilated appendix with periappendiceal fat stranding.", "Alvarado score of 8.",
               "Pregnancy test negative."),
              ("cefazolin", "metronidazole", "morphine"),
              ("laparoscopic appendicectomy today", "nil by mouth", "consent obtained for surgery"),
              labs={"WBC": (12.8, 18.6), "CRP": (30, 160)},
              vitals={"temp": (37.5, 38.6), "hr": (92, 112)}),
    Condition("acute gastroenteritis", "A09", "Emergency Medicine",
              ("diarrhoea", "vomiting", "crampy abdominal pain"),
              ("six loose stools a day", "a family member with similar symptoms", "inability to keep fluids down"),
              ("dry mucous membranes", "mild diffuse abdominal tenderness", "normal bowel sounds"),
              ("Stool culture sent.", "Lying and standing blood pressure recorded.", "No blood in the stool."),
              ("ondansetron", "sodium chloride 0.9%"),
              ("oral rehydration solution", "hand hygiene advice", "return if unable to tolerate fluids"),
              labs={"K": (2.9, 3.3), "BUN": (22, 34)},
              vitals={"hr": (96, 118), "sbp": (96, 110)}),
    Condition("migraine without aura", "G43.909", "Neurology",
              ("throbbing unilateral headache", "photophobia", "nausea"),
              ("attacks three times a month", "attacks triggered by missed meals", "relief with sleep"),
              ("normal neurological examination", "no papilloedema", "no neck stiffness"),
              ("Headache diary reviewed.", "No red flag features.", "Neuroimaging not indicated."),
              ("sumatriptan", "ibuprofen", "propranolol"),
              ("keep a headache diary", "limit analgesic use to fewer than 10 days a month",
               "start prophylaxis if attacks continue"),
              ),
    Condition("acute pancreatitis", "K85.90", "Gastroenterology",
              ("severe epigastric pain radiating to the back", "vomiting"),
              ("heavy alcohol intake at the weekend", "known gallstones", "pain eased by leaning forward"),
              ("epigastric tenderness with guarding", "reduced bowel sounds", "no jaundice"),
              ("Ultrasound: gallstones, common bile duct 6 mm.", "Glasgow score of 2.",
               "CT not required at this stage."),
              ("sodium chloride 0.9%", "morphine", "ondansetron"),
              ("aggressive IV fluids with hourly urine output", "early oral feeding as tolerated",
               "surgical review for cholecystectomy"),
              labs={"Lipase": (420, 2600), "WBC": (11.5, 16.0), "ALT": (60, 240)},
              vitals={"hr": (100, 120)}),
    Condition("sepsis secondary to urinary tract infection", "A41.9", "Intensive Care",
              ("fever", "confusion", "reduced urine output"),
              ("being found drowsy at home", "an indwelling urinary catheter", "two falls over the past day"),
              ("warm peripheries", "capillary refill 3 seconds", "suprapubic tenderness"),
              ("Blood cultures taken before antibiotics.", "Urine culture sent.",
               "Sepsis six bundle completed within one hour."),
              ("piperacillin-tazobactam", "sodium chloride 0.9%"),
              ("escalate to critical care if lactate does not fall", "hourly observations",
               "review antibiotics at 48 hours"),
              labs={"Lactate": (2.8, 5.4), "WBC": (15.0, 26.0), "CRP": (120, 320), "Cr": (1.4, 2.6)},
              vitals={"temp": (38.4, 40.1), "hr": (112, 136), "sbp": (82, 98), "rr": (22, 30)}),
    Condition("primary hypothyroidism", "E03.9", "Endocrinology",
              ("fatigue", "weight gain", "cold intolerance", "constipation"),
              ("symptoms over six months", "dry skin", "low mood"),
              ("dry coarse skin", "slow-relaxing ankle reflexes", "no goitre"),
              ("Thyroid peroxidase antibodies positive.", "Free T4 low.", "Lipid profile requested."),
              ("levothyroxine",),
              ("recheck TSH in 6 weeks", "take levothyroxine on an empty stomach", "titrate dose to symptoms and TSH"),
              labs={"TSH": (8.5, 34.0)},
              vitals={"hr": (52, 60)}),
    Condition("iron deficiency anaemia", "D50.9", "Gastroenterology",
              ("tiredness", "breathlessness on stairs", "pallor"),
              ("no overt bleeding", "a vegetarian diet", "a change in bowel habit"),
              ("conjunctival pallor", "koilonychia", "soft non-tender abdomen"),
              ("Coeliac serology negative.", "Faecal immunochemical test positive.",
               "Blood film: microcytic hypochromic cells."),
              ("ferrous sulfate",),
              ("refer for gastroscopy and colonoscopy", "recheck haemoglobin in 4 weeks",
               "dietary advice on iron-rich foods"),
              labs={"Hb": (7.4, 10.2), "Ferritin": (3, 12)}),
    Condition("non-ST-elevation myocardial infarction", "I21.4", "Cardiology",
              ("central chest pain", "sweating", "pain radiating to the left arm"),
              ("pain at rest for 40 minutes", "a strong family history of heart disease", "raised cholesterol"),
              ("normal heart sounds", "clear chest", "no peripheral oedema"),
              ("ECG: ST depression in V4-V6.", "GRACE score of 132.", "Echocardiogram: mild inferior hypokinesia."),
              ("aspirin", "ticagrelor", "fondaparinux", "atorvastatin", "bisoprolol"),
              ("coronary angiography within 72 hours", "cardiac rehabilitation referral",
               "secondary prevention counselling"),
              labs={"TnI": (68, 1450)},
              vitals={"hr": (88, 106)}),
)

COMORBIDITIES = (
    Comorbidity("hypertension", "I10", "amlodipine"),
    Comorbidity("type 2 diabetes", "E11.9", "metformin"),
    Comorbidity("hyperlipidaemia", "E78.5", "atorvastatin"),
    Comorbidity("hypothyroidism", "E03.9", "levothyroxine"),
    Comorbidity("gastro-oesophageal reflux disease", "K21.9", "omeprazole"),
    Comorbidity("osteoarthritis of the knees", "M17.0", "paracetamol"),
    Comorbidity("depression", "F32.9", "sertraline"),
    Comorbidity("COPD", "J44.9", "tiotropium"),
    Comorbidity("gout", "M10.9", "allopurinol"),
    Comorbidity("previous myocardial infarction", "I25.2", "aspirin"),
    Comorbidity("atrial fibrillation", "I48.91", "apixaban"),
    Comorbidity("chronic kidney disease stage 3", "N18.30", "ramipril"),
)

ALLERGIES = (
    "no known drug allergies", "no known drug allergies", "no known drug allergies",
    "penicillin (rash)", "sulfonamides (hives)", "codeine (nausea)", "latex (contact dermatitis)",
    "iodinated contrast (urticaria)", "trimethoprim (rash)",
)

FIRST_NAMES = {
    "F": ("Mara", "Ingrid", "Aisha", "Lucia", "Hannah", "Priya", "Chloe", "Yetunde", "Maren", "Sofia", "Nadia",
          "Elena", "Grace", "Keiko", "Fatima", "Olga", "Rosa", "Leila", "Bronwyn", "Tamsin", "Ana", "Margit"),
    "M": ("Tomas", "Kwame", "Rafael", "Henrik", "Arjun", "Daniel", "Malik", "Stefan", "Hiroshi", "Owen", "Luca",
          "Samuel", "Ivan", "Omar", "Piotr", "Callum", "Mateo", "Jonas", "Desmond", "Ravi", "Emeka", "Felix"),
}
SURNAMES = (
    "Lindqvist", "Okafor", "Moreau", "Castellanos", "Nakamura", "Brennan", "Haddad", "Kowalczyk", "Mensah",
    "Fitzgerald", "Varga", "Delacroix", "Sandoval", "Oyelaran", "Petrov", "Achterberg", "Quintero", "Rahman",
    "Thorsen", "Abernethy", "Szabo", "Iyer", "Oduya", "Vasquez", "Halloran", "Benedetti", "Kaur", "Novak",
    "Whitcombe", "Adeyemi", "Marchetti", "Sorensen", "Takahashi", "Ferreira", "Lachance", "Mbeki",
)
HOSPITALS = (
    "Northbridge General Hospital", "St Aldric Infirmary", "Riverside University Medical Centre",
    "Kestrel Valley Hospital", "Harbourview Community Hospital", "Elmstead District Hospital",
)
OCCUPATIONS = (
    "a retired teacher", "a bus driver", "a nurse", "an accountant", "a farmer", "a warehouse worker",
    "a retired engineer", "a shop owner", "a university student", "a chef", "an electrician", "a civil servant",
)
