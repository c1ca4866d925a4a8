#!/usr/bin/env python3
"""Generate the second, harder labelled set for feedsieve's story detector.

Writes ``dev.jsonl`` and ``heldout.jsonl`` (see tests/fixtures/stories/README.md):
one JSON object a line, in the schema of tests/fixtures/dedup/pairs.jsonl,

    {"id": "d0001", "label": "dup" | "distinct", "kind": "<kind>",
     "a": {"feed": "...", "title": "...", "text": "..."},
     "b": {"feed": "...", "title": "...", "text": "..."}}

The pairs are made from the source stories in ``sources.json`` next to this script:
sources s00-s31 make the development half, s32-s63 the held-out half, and each half
has its own seed: the halves have no story, sentence or random draw in common.

A "dup" pair is two outlets' versions of one story: the other outlet rewords it
(a synonym table, clauses and attributions moved, sentences split, merged, dropped
or added, but names, numbers and quotes kept), reorders its paragraphs, runs only
its first one or two paragraphs, or wraps it in datelines, bylines and footers, or
several of these at once. A "distinct" pair must stay apart: one template filled
for another event, a follow-up a day later, two episodes of a weekly series, two
short stories under one long footer, or two unrelated stories from one feed.

Python 3.11, standard library only. The output depends on nothing but the seeds and
sources.json: it is byte-identical from run to run and independent of PYTHONHASHSEED.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "stories"
SOURCES = HERE / "sources.json"

DEV_SEED = 20260301
HELDOUT_SEED = 71730904
SPLIT = 32  # sources [0, SPLIT) are the development half, the rest held out

DUP_KINDS = ["reworded", "reworded_reordered", "reworded_excerpt", "excerpt", "wrapped",
             "reworded_wrapped"]
DISTINCT_KINDS = ["template_lookalike", "follow_up", "series", "short_long_footer", "unrelated"]
PER_DUP_KIND = 55  # 6 kinds: 330 dup pairs a half
PER_DISTINCT_KIND = 66  # 5 kinds: 330 distinct pairs a half

# A feed never carries more than this many texts made from one source story (its
# version, a follow-up, a look-alike, a series episode, a short). Three would make
# the story's own sentences look like the feed's boilerplate to a per-feed stripper.
MAX_PER_FEED_AND_SOURCE = 2

# ---------------------------------------------------------------------------------
# Pools for the slots of a look-alike (one template filled for another event).
# Every name and place is invented.
# ---------------------------------------------------------------------------------

POOLS: dict[str, list[str]] = {
    "town": [
        "Brenmouth", "Calderwick", "Lowmere", "Port Calden", "Eastfold", "Kessingby", "Tarrowgate",
        "Westcombe", "Ashby Cross", "Corrin Bay", "Dunmore Bay", "Felsmouth", "Greywater",
        "Hollinsford", "Irvale", "Kirkwell", "Larkfield", "Millbrae", "Norbury Vale", "Oakmere",
        "Pellsworth", "Redmarsh", "Saltmere", "Thornwick", "Upton Fells", "Varrow Ford",
        "Wendlecombe", "Yarrowby", "Ambleside Cross", "Brackwater", "Cullen Heath", "Dravenport",
        "Elmstow", "Farrowdale", "Gallowmere", "Harnby", "Inchcombe", "Jessop's Bridge",
        "Kelderby", "Lissenford", "Marrowgate", "Nettlecombe", "Orrin Quay", "Pennick",
    ],
    "crossing": [
        "the Kessel crossing", "the Tarrow Gap checkpoint", "the Ombry Bridge crossing",
        "the Harl Pass checkpoint", "the Vennick crossing", "the Stell Valley border post",
        "the Marrin Ford crossing", "the Quellen checkpoint", "the Dorrow crossing",
        "the Aspen Gate border post",
    ],
    "port": [
        "the port of Brenmouth", "Port Calden", "the Eastfold container terminal",
        "the port of Saltmere", "the port of Felsmouth", "the port of Kirkwell",
        "the Greywater ferry terminal", "the port of Dunmore", "the Redmarsh docks",
        "the North Quay terminal", "the port of Orrin Quay", "the Dravenport container terminal",
    ],
    "coast": [
        "Gull Point", "Seal Bay", "Raven Head", "Cape Hollin", "the Merrow estuary",
        "the Sandrey banks", "Heron Sands", "Black Tor", "the Lanner Sound", "Curlew Head",
        "Shell Bay", "the Tidewell flats", "Kittiwake Cove", "the Storran reef",
    ],
    "street": [
        "Foundry Lane", "Weaver Road", "Market Street", "Harbour Row", "Chapel Street",
        "Gantry Street", "Orchard Way", "Bridge Street", "Tanner's Walk", "Mill Lane",
        "Station Road", "Quarry Hill", "Ropewalk Street", "Cooper's Yard", "Linden Avenue",
        "Castle Parade", "Well Street", "Salter Lane",
    ],
    "country": ["Varland", "Estmark", "Sundria", "Halvonia", "Lessary", "Morvenia", "Castrelle",
                "Norvadia", "Ostgard"],
    "ship": [
        "Morning Tern", "Grey Heron", "Atlantic Vireo", "Island Maid", "Silver Curlew",
        "Northern Lark", "Bonny Kate", "Sea Harrier", "Coral Dawn", "Westward Ho", "Star of Kelder",
        "Golden Plover", "Brave Endeavour", "Amber Tide", "Harvest Moon", "Polar Mist",
    ],
    "op": ["Bracken", "Hawthorn", "Millstone", "Kestrel", "Lantern", "Driftwood", "Tinder",
           "Saltmarsh", "Ironside", "Foxglove", "Nightjar", "Quarrystone"],
    "firm": [
        "Greyline Logistics", "Fenwick Fruit Imports", "Harlow Components", "Marden Freight",
        "Castleby Haulage", "Northgate Wholesale", "Pellow Trading", "Aldous Distribution",
        "Brightwater Foods", "Carrow Engineering",
    ],
    "cargo": ["frozen vegetables", "insulation panels", "garden furniture", "car tyres",
              "paper rolls", "ceramic tiles", "tinned tomatoes", "bicycle parts", "plastic pipes"],
    "dog": ["Bruno", "Juno", "Pepper", "Skye", "Basil", "Rolo", "Tess", "Marley"],
    "river": ["the Varrow", "the Estin", "the Callow", "the Drune", "the Maren", "the Oselle"],
    "road": ["the Coast Road", "the Northern Bypass", "the Ridgeway", "the Old Mill Road",
             "the Valley Road", "the Harbour Road", "the Moor Road"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
}
MALE_FIRST = ["Colin", "Peter", "Neil", "Ruben", "Luca", "Owen", "Damian", "Anton", "Tobias",
              "Marcus", "Victor", "Horace", "Felix", "Stefan", "Cyril", "Rafael", "Jordan", "Kevin",
              "Edwin", "Hendrik", "Jonas", "Arno", "Simon", "Hugo", "Lewis", "Rolf", "Oskar",
              "Duncan", "Elias", "Trevor", "Graham", "Nils", "Brendan", "Karl", "Desmond", "Ian",
              "Teodor", "Alasdair", "Martin", "Gareth", "Roy", "Ewan", "Alberto", "Milo", "Bram"]
FEMALE_FIRST = ["Ilse", "Marta", "Helen", "Rosa", "Dana", "Petra", "Sophie", "Carla", "Fiona",
                "Beatrice", "Imogen", "Lena", "Gemma", "Ada", "Nadia", "Harriet", "Odile", "Greta",
                "Sabine", "Ella", "Clara", "Tamsin", "Lydia", "Sigrid", "Mirela", "Frances", "Agnes",
                "Hilde", "Judith", "Ruth", "Maud", "Eileen", "Ingrid", "Priya", "Selma", "Tessa",
                "Lucie", "Anita", "Yvette", "Hanna", "Edda", "Noor"]
LAST = ["Ashdown", "Lindell", "Marken", "Venholm", "Felding", "Pask", "Strand", "Delacourt",
        "Renn", "Harrow", "Whitlow", "Castell", "Soll", "Brenner", "Pryce", "Colby", "Arkwright",
        "Reese", "Voss", "Marsh", "Aalto", "Korr", "Eberle", "Lune", "Hale", "Vell", "Harju",
        "Lamm", "Tollan", "Benn", "Sorel", "Orme", "Grau", "Poole", "Olrik", "Daneau", "Frant",
        "Ostrom", "Tilly", "Moor", "Rook", "Brandt", "Jensson", "Faye", "Kolbe", "Quill",
        "Damsgaard", "Armitage", "Penhale", "Skeet", "Haldane", "Treadwell", "Moen", "Toth",
        "Varnell", "Garrow", "Ebbs", "Whitcombe", "Amberg", "Sarto", "Ferrin", "Carrow", "Mills",
        "Rourke", "Marr", "Kellaway", "Elster", "Marchbank", "Tosh", "Halvors", "Pardew",
        "Okoro", "Engstrom", "Lanner", "Brodie", "Hardwick", "Garland", "Vasko", "Marlowe",
        "Quinn", "Yeo", "Colquhoun", "Imrie", "Lanark", "Gadsden", "Kessler", "Struther",
        "Dunnock", "Pellham", "Corvin", "Sallow", "Tregarth", "Wyndle", "Brisk", "Oakhart"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

# ---------------------------------------------------------------------------------
# Rewording: phrases another outlet would use instead. Each group lists phrases that
# can stand for one another in running text; ONE_WAY maps a phrase to replacements
# that are safe in that direction only. Quotes are never reworded.
# ---------------------------------------------------------------------------------

GROUPS: list[list[str]] = [
    # speech and reporting
    ["said", "stated"], ["said on", "announced on"], ["told reporters", "told journalists"],
    ["press conference", "news conference"], ["spokesman", "spokesperson"],
    ["spokeswoman", "spokesperson"], ["officials", "authorities"],
    ["the court heard", "the court was told"],
    ["told officers", "told police"],
    ["believe", "think"], ["believed", "thought"], ["is believed to", "is thought to"],
    ["urged", "called on", "encouraged"], ["contacted", "got in touch with"],
    ["get in touch", "make contact"], ["phoned", "rang"], ["described as", "characterised as"],
    ["announced", "confirmed"], ["revealed", "disclosed"], ["showed", "indicated", "revealed"],
    # police and crime
    ["arrested", "detained"], ["were arrested", "were detained", "were taken into custody"],
    ["was arrested", "was detained", "was taken into custody"], ["arrests", "detentions"],
    ["seized", "confiscated"], ["seizure", "haul"], ["seizures", "hauls"],
    ["found", "discovered"], ["find", "discover"], ["hidden", "concealed"], ["hide", "conceal"],
    ["hiding", "concealing"], ["raid", "swoop"], ["raids", "swoops"], ["raided", "swooped on"],
    ["drugs", "narcotics"], ["smugglers", "traffickers"], ["gang", "criminal network"],
    ["criminals", "crooks"], ["thieves", "crooks"], ["fraudsters", "scammers", "con artists"],
    ["attack", "assault"], ["robbed", "mugged"], ["stabbed", "knifed"], ["fight", "brawl"],
    ["investigation", "inquiry", "probe"],
    ["investigations", "inquiries"], ["investigating", "looking into"],
    ["examined", "inspected", "studied"], ["examine", "look into"],
    ["examining", "looking at"], ["recovered", "retrieved"],
    ["tip-off", "tip"], ["information", "details"],
    ["security camera footage", "CCTV footage", "security camera video"],
    ["footage", "video", "recordings"], ["mobile phones", "phones", "handsets"],
    ["at the scene", "on the spot"], ["unit", "squad"], ["witnesses", "onlookers"],
    ["released on bail", "bailed"], ["remanded in custody", "held in custody"],
    ["remains in custody", "is still in custody", "is being held"],
    ["in custody", "in detention"],
    ["pending further inquiries", "while inquiries continue"],
    ["appear before magistrates", "appear in court", "face magistrates"],
    ["charged with", "accused of"], ["jailed", "imprisoned", "sent to prison"],
    ["prison", "jail"], ["prison sentence", "jail term", "custodial sentence"],
    ["pleaded guilty to", "admitted"], ["convicted", "found guilty"],
    ["cleared of", "acquitted of"], ["prosecutors", "the prosecution"],
    ["lawyer", "solicitor", "attorney"], ["lawyers", "legal team"],
    ["compensation", "damages"], ["ruling", "judgment"], ["banned", "barred"],
    # border, customs, sea
    ["border guards", "border officers", "border police"], ["border officers", "border guards"],
    ["customs officers", "customs officials", "customs staff"],
    ["lorry", "truck"], ["lorries", "trucks"], ["car", "vehicle"], ["cars", "vehicles"],
    ["shipment", "consignment"], ["shipments", "consignments"], ["goods", "products"],
    ["cargo vessel", "freight vessel"], ["cargo ship", "freight ship"],
    ["passengers", "travellers"], ["travellers", "passengers"],
    ["smuggled cigarettes", "contraband cigarettes"], ["smuggled alcohol", "contraband alcohol"],
    ["smuggled into", "brought illegally into"], ["smuggling", "trafficking"],
    ["sniffer dog", "detection dog"], ["detectors", "sensors"],
    ["vessel", "boat"], ["boat", "vessel"], ["crew members", "sailors", "crew"],
    ["rescued", "saved"], ["rescue team", "rescue crew"],
    ["lifeboat", "rescue boat"], ["winched", "hoisted"], ["airlifted", "lifted to safety"],
    ["drifting", "floating"], ["sank", "went down"], ["sinking", "foundering"],
    ["raised the alarm", "sounded the alarm", "called for help"],
    ["distress call", "mayday call", "emergency call"], ["heavy seas", "rough seas"],
    ["strong winds", "high winds", "powerful winds"], ["gale", "storm-force wind"],
    ["along the coast", "along the shore"], ["early hours", "small hours"],
    ["dawn", "daybreak"], ["overnight", "during the night"], ["at night", "after dark"],
    ["handed over to", "passed to"], ["transferred", "moved"], ["taken to hospital",
                                                               "brought to hospital"],
    ["paramedics", "ambulance crews"], ["firefighters", "fire crews"],
    ["emergency services", "rescuers"], ["unhurt", "uninjured"], ["injured", "hurt"],
    ["minor injuries", "light injuries"], ["exhausted", "worn out"],
    # courts of everyday life
    ["council", "local authority"], ["councillors", "council members"],
    ["residents", "locals"], ["neighbours", "people living nearby"], ["homes", "houses"],
    ["flat", "apartment"], ["flats", "apartments"], ["tenants", "renters"],
    ["pupils", "students"], ["pensioners", "retirees"], ["campaigners", "activists"],
    ["plans", "proposals"], ["approved", "backed"], ["project", "scheme"],
    ["vote", "ballot"], ["set up", "established"], ["repairs", "repair work"],
    ["corrosion", "rust"], ["destroyed", "wrecked"], ["the fire", "the blaze"],
    ["a fire", "a blaze"], ["heavy rain", "downpours"],
    ["power", "electricity"], ["blocked", "obstructed"], ["queues", "lines"],
    ["delays", "hold-ups"], ["delayed", "held up"], ["postponed", "put off"],
    ["cancelled", "called off"], ["shut down", "closed down"],
    ["reopened", "opened again"], ["strike", "walkout"], ["pay rise", "salary increase"],
    ["recruits", "trainees"], ["figures", "statistics"],
    ["grant", "award"], ["text messages", "texts"],
    ["company", "firm"], ["firm", "company"], ["staff", "employees"], ["workers", "labourers"],
    ["chief executive", "boss"], ["shop", "store"], ["shops", "stores"],
    ["shopkeepers", "shop owners", "traders"], ["customers", "clients"],
    ["money", "funds"], ["funds", "money"], ["jobs", "posts"], ["closure", "shutdown"],
    ["factory", "plant"], ["blow", "setback"], ["devastating", "crushing"],
    ["bought", "purchased"], ["buy", "purchase"], ["received", "got"],
    ["provided", "supplied"], ["tried to", "attempted to"], ["trying to", "attempting to"],
    ["try to", "attempt to"], 
    ["needed", "required"], ["allowed", "permitted"], ["returned", "went back"],
    ["stopped", "halted"], ["checks", "inspections"], ["checked", "inspected"],
    ["dismantling", "taking apart"], ["dismantled", "taken apart"], ["sharply", "steeply"],
    ["significantly", "considerably"], ["significant", "considerable"],
    ["regularly", "routinely"], ["repeatedly", "again and again"],
    ["properly", "correctly"], ["particularly", "especially"], ["mainly", "mostly", "largely"],
    ["almost", "nearly"], ["quickly", "rapidly", "swiftly"], ["immediately", "at once",
                                                              "straight away"],
    ["currently", "at present"], ["previous", "prior"], ["again", "once more"],
    # glue words and phrases
    ["a number of", "several"], ["most of", "the majority of"],
    ["while", "whilst"], ["although", "though"], ["despite", "in spite of"],
    ["during", "in the course of"],
    ["as well as", "along with"], ["including", "such as"], ["among", "amongst"],
    ["nobody", "no one"], ["anyone", "anybody"], ["someone", "somebody"],
    ["everyone", "everybody"], ["each time", "every time"], ["every day", "daily"],
    ["in total", "altogether"], ["large", "big"], ["largest", "biggest"],
    ["huge", "massive"], ["illegal", "illicit", "unlawful"], ["fake", "counterfeit", "bogus"],
    ["counterfeit", "fake"], ["poor quality", "low quality"], ["elderly", "older"],
    ["well known", "familiar"], ["difficult", "tough"], ["busy", "crowded"],
    ["main", "principal"], ["major", "significant"], ["likely", "probable"],
    ["is expected to", "is due to"], ["are expected to", "are due to"],
    ["was expected to", "was due to"], ["plans to", "intends to"], ["plan to", "intend to"],
    ["around the clock", "day and night"], ["a day", "per day"], ["a week", "per week"],
    ["percent", "per cent"], ["kilos", "kilograms"], ["tonnes", "metric tons"],
    ["shortly after", "soon after", "just after"], ["early on", "in the early hours of"],
    ["ongoing", "continuing"], ["continuing", "ongoing"], ["condition", "state"],
    ["risk", "danger"], ["warnings", "alerts"], ["worth", "valued at"],
    ["damage", "harm"], ["flooding", "floods"], ["children", "minors", "youngsters"],
    ["teenagers", "youths"], ["people", "individuals"],
]
ONE_WAY: dict[str, list[str]] = {
    "capsized": ["overturned"], "because": ["since", "as"], "detectives": ["investigators"],
    "helicopter": ["chopper"], "lifeboat crew": ["rescue boat crew"], "seafront": ["promenade"],
    "the scene": ["the site"], "opened fire": ["fired"], "a large amount": ["a great deal"],
    "a small amount": ["a little"], "the previous evening": ["the evening before"],
    "the previous night": ["the night before"], "the following day": ["the next day"],
    "last week": ["the previous week"], "last month": ["the previous month"],
    "earlier this week": ["at the start of the week"], "later this week": ["in the coming days"],
    "next month": ["in the coming weeks"], "this week": ["in recent days"],
    "advised": ["told"], "intelligence": ["information"], "wages": ["pay"], "salary": ["pay"],
    "website": ["site"], "websites": ["sites"], "begin": ["start"], "launched": ["started"],
    "inspection": ["check"], "rose": ["climbed"], "risen": ["climbed"], "fallen": ["dropped"],
    "because of": ["due to"], "whether": ["if"], "smuggled": ["brought in illegally"],
    "began": ["started"], "closed": ["shut"],
}
# Phrases replaced less often than the others (a copy that says "stated" every time
# reads like no outlet's copy).
SOFT = {"said": 0.3, "stated": 0.5, "people": 0.5, "council": 0.5}
# Phrases that must not be replaced when the next word (or the previous one) is one of
# these: "found guilty", "fire service", "care home", "the elderly" and the like.
NEXT_BLOCK: dict[str, set[str]] = {
    "found": {"guilty", "not"}, "fallen": {"trees", "power"}, "car": {"park", "parks"},
    "money": {"laundering"}, "intelligence": {"unit"}, "told": {"not", "to", "that"},
    "needed": {"to"}, "likely": {"to"}, "allowed": {"home"}, "continuing": {"to"},
    "fight": {"the"}, "power": {"lines", "failure"}, "risk": {"assessment"}, "closed": {"to"},
    "a day": {"later", "after", "before", "earlier", "ago"},
    "a week": {"later", "after", "before", "earlier", "ago"},
    "given": {"to", "the"}, "grant": {"was"}, "site": {"was"}, "vessel": {"traffic"},
    "plans": {"to"}, "people": {"smuggling", "trafficking"}, "residents": {"of"},
    "staff": {"shortages"}, "gale": {"warning"},
    "the fire": {"service", "brigade", "alarm", "alarms", "exit", "investigator", "risk",
                 "station", "officers"},
    "a fire": {"risk", "alarm", "exit", "station"}, "smuggled": {"gold", "cigarettes", "alcohol"},
}
PREV_BLOCK: dict[str, set[str]] = {
    "elderly": {"the"}, "injured": {"the"}, "fight": {"to", "would", "will"},
    "strike": {"to"}, "returned": {"be", "been"}, "factory": {"cannabis"}, "risk": {"at", "flood"},
    "unit": {"storage"}, "homes": {"care"}, "vote": {"to"}, "council": {"town"},
    "raid": {"hammer"}, "gang": {"criminal"}, "though": {"even", "as"},
    "crew": {"lifeboat", "helicopter", "rescue", "boat", "cabin", "ambulance", "fire", "the"},
    "a day": {"within", "in", "for", "than", "after"},
    "a week": {"within", "in", "for", "than", "after", "last"},
    "set up": {"will", "to", "would", "could", "can", "must", "should", "may"},
}
# Before a number: "about 40" / "around 40", "more than 40" / "over 40" ...
NUMBER_GROUPS: list[list[str]] = [
    ["about", "around", "roughly", "approximately"],
    ["more than", "upwards of"],
    ["at least", "no fewer than"],
    ["less than", "under"],
]
# British to American spellings: some copies come from an outlet with a US style guide.
AMERICAN = {
    "neighbours": "neighbors", "neighbour": "neighbor", "centre": "center", "centres": "centers",
    "kilometres": "kilometers", "kilometre": "kilometer", "metres": "meters", "metre": "meter",
    "litres": "liters", "organised": "organized", "offence": "offense", "offences": "offenses",
    "licence": "license", "jewellery": "jewelry", "labour": "labor", "harbour": "harbor",
    "travellers": "travelers", "travelling": "traveling", "travelled": "traveled",
    "cancelled": "canceled", "apologised": "apologized", "realised": "realized",
    "authorised": "authorized", "recognised": "recognized", "criticised": "criticized",
    "tyres": "tires", "grey": "gray", "anaesthetists": "anesthetists", "favour": "favor",
    "behaviour": "behavior", "defence": "defense", "programme": "program", "colour": "color",
    "modelled": "modeled", "fuelled": "fueled", "analysed": "analyzed", "storey": "story",
    "whilst": "while", "amongst": "among", "towards": "toward", "afterwards": "afterward",
    "characterised": "characterized", "labourers": "laborers", "penalised": "penalized",
    "towns": "towns", "lorry": "truck", "lorries": "trucks", "mobile phones": "cellphones",
    "petrol": "gas", "motorway": "highway", "pavement": "sidewalk", "pavements": "sidewalks",
}

# Sentences an outlet adds to its version (background it had on file).
ADDED: dict[str, list[str]] = {
    "police": ["It was not immediately clear whether the suspects had lawyers.",
               "Police did not give further details.",
               "The force has faced criticism this year over response times in the area.",
               "The force said it would give an update in due course."],
    "border": ["Crossings of the border have risen this year, according to official figures.",
               "The directorate did not say how many officers were involved.",
               "Human rights groups have called for safe routes for people seeking asylum.",
               "The government has promised more money for border security."],
    "customs": ["The service did not name the companies involved.",
                "Seizures at the country's ports have risen for the third year in a row.",
                "Customs staff have warned that they are stretched by a growing workload.",
                "It was not clear how long the goods had been in the country."],
    "coastguard": ["Weather conditions at the time were described as poor.",
                   "The coast guard has answered a rising number of calls this year.",
                   "Volunteer crews carry out most rescues along this part of the coast.",
                   "It was not clear what caused the problem."],
    "courts": ["The defendant showed no emotion as the verdict was read.",
               "There was no immediate comment from the defence.",
               "The case had been delayed several times.",
               "Members of the public filled the gallery for the hearing."],
    "general": ["The issue is expected to be discussed at the next council meeting.",
                "Opposition politicians criticised the handling of the issue.",
                "Further details are expected to be published in the coming weeks.",
                "The story has been widely discussed on social media."],
}

# ---------------------------------------------------------------------------------
# Feeds
# ---------------------------------------------------------------------------------


@dataclass
class Feed:
    name: str
    display: str
    role: str  # home | plain | digest | wire | paper | footer
    title: str = "same"  # same | titlecase | suffix
    dateline: str | None = None  # "{TOWN}" / "{Town}" / "{date}"
    byline: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    optional: list[tuple[float, str]] = field(default_factory=list)  # footer lines, sometimes
    credit: tuple[list[str], list[str]] | None = None  # reporters, editors
    read_more: str | None = None  # a line naming another of the feed's stories
    full_story: str | None = None  # digests: a line naming the outlet that ran the story
    stamp: bool = False  # "Published 09:42, updated 11:05"
    headline_first: bool = False  # the text repeats the headline as its first line


FEEDS: list[Feed] = [
    # Home feeds: the outlets the source stories first appeared in.
    Feed("police-press", "National Police press office", "home",
         footer=["Anyone with information can contact the National Police on the non-emergency "
                 "line or report it anonymously through the Crimestoppers website.",
                 "Issued by the Corporate Communications Department, National Police."]),
    Feed("border-agency-news", "Border Protection Directorate", "home",
         footer=["About the Border Protection Directorate: the Directorate is responsible for the "
                 "security of the country's land borders, airports and seaports. It employs border "
                 "officers, investigators and analysts and works closely with the police, the "
                 "customs service and the border services of neighbouring countries."]),
    Feed("customs-bulletin", "Revenue and Customs Service", "home",
         footer=["Notes to editors: the Revenue and Customs Service collects taxes and duties and "
                 "protects the country's borders against the smuggling of drugs, tobacco, alcohol, "
                 "weapons and counterfeit goods. Information about smuggling can be reported in "
                 "confidence through the service's online form.",
                 "Media enquiries: press office, Revenue and Customs Service."]),
    Feed("coastguard-newsroom", "Coast Guard", "home",
         footer=["In an emergency at sea or on the coast, call the emergency number and ask for "
                 "the Coast Guard.",
                 "The Coast Guard coordinates search and rescue around the coast and at sea, "
                 "working with volunteer lifeboat crews, rescue helicopters and coastal rescue "
                 "teams."]),
    Feed("courts-gazette", "Courts Gazette", "home",
         footer=["Courts Gazette reports on cases heard in the district, regional and appeal "
                 "courts. Reporting restrictions may apply to some cases. Corrections and "
                 "complaints can be sent to the editor."]),
    Feed("metro-herald", "Metro Herald", "home", title="titlecase",
         read_more="Related: {other}"),
    Feed("valley-courier", "Valley Courier", "home",
         footer=["Do you have a story for the Valley Courier? Contact our newsdesk by email or "
                 "through the website."]),
    Feed("harbourtown-news", "Harbourtown News", "home",
         footer=["Harbourtown News is an independent, reader-funded newsroom. If you value local "
                 "reporting, please consider becoming a member."]),
    # Outlets that rewrite stories in their own words, without boilerplate.
    Feed("riverbank-post", "Riverbank Post", "plain"),
    Feed("open-ledger", "Open Ledger", "plain", title="suffix"),
    Feed("citizen-desk", "Citizen Desk", "plain"),
    Feed("brackwater-tribune", "Brackwater Tribune", "plain", title="titlecase"),
    Feed("lakeside-voice", "Lakeside Voice", "plain"),
    Feed("northern-record", "Northern Record", "plain", title="titlecase"),
    # Digests: the first paragraphs and a pointer to the outlet.
    Feed("morning-roundup", "Morning Roundup", "digest",
         full_story="Read the full story at {outlet}.",
         footer=["Morning Roundup: the day's essential stories in five minutes. Forward this to "
                 "a friend who would enjoy it."]),
    Feed("newsline-digest", "Newsline Digest", "digest", full_story="Read more"),
    Feed("briefing-room", "Briefing Room", "digest", full_story="Source: {outlet}",
         headline_first=True),
    Feed("headlines-now", "Headlines Now", "digest", title="titlecase"),
    # Wires: datelines and credit lines.
    Feed("northline-wire", "Northline Wire", "wire", dateline="{TOWN} (Northline Wire) - ",
         credit=(["Anna Brisk", "Tomas Wyndle", "Ivo Pellham", "Mara Sallow"],
                 ["Ruth Corvin", "Ben Tregarth", "Kit Dunnock"])),
    Feed("atlas-press", "Atlas Press", "wire", dateline="{Town}, {date} (Atlas Press) - ",
         footer=["(c) Atlas Press. All rights reserved. This material may not be published, "
                 "broadcast, rewritten or redistributed."],
         optional=[(0.4, "Additional reporting by {reporter}.")]),
    Feed("civic-wire", "Civic Wire", "wire", dateline="{TOWN} - ",
         byline=["Noor Oakhart", "Milo Sallow", "Edda Brisk"],
         footer=["Civic Wire is a non-profit news agency serving local newspapers and radio "
                 "stations. Our stories may be republished free of charge with credit."]),
    # Newspapers that wrap every story in their own header and footer.
    Feed("kestrel-gazette", "Kestrel Gazette", "paper",
         byline=["Fern Harrow, Crime Correspondent", "Gil Aldous, Home Affairs Editor",
                 "Nia Tregarth, Senior Reporter"],
         header=["This article is part of our Safer Communities coverage."],
         footer=["Quality journalism takes time and money. Subscribe to the Kestrel Gazette from "
                 "just a few euros a month and get unlimited access to all of our reporting, our "
                 "newsletters and the digital edition."],
         read_more="Read more: {other}"),
    Feed("daily-lantern", "Daily Lantern", "paper", title="suffix", stamp=True,
         header=["We use cookies to improve your experience on our site. By continuing to browse "
                 "you agree to our use of cookies."],
         footer=["Support the Daily Lantern. Our journalism is free to read because readers like "
                 "you pay for it. Become a supporter today and help keep independent news alive.",
                 "Sign up for our free morning newsletter to get the day's top stories in your "
                 "inbox."],
         read_more="Read more: {other}"),
    Feed("southern-echo", "Southern Echo", "paper", title="titlecase",
         byline=["Rhian Castle, Reporter", "Owen Brightwater, News Editor"],
         footer=["Copyright Southern Echo Media. All rights reserved. This material may not be "
                 "published, broadcast, rewritten or redistributed without permission."],
         optional=[(0.5, "Have you got a story? Get in touch with the Southern Echo newsdesk.")]),
    # Community feeds: short items under one long footer.
    Feed("town-bulletin", "Town Bulletin", "footer",
         footer=["The Town Bulletin is written and edited by volunteers and delivered free to "
                 "every household in the district. We welcome news, photographs and letters from "
                 "residents, clubs, schools, churches and community groups, and we publish every "
                 "item that meets our guidelines on accuracy and fairness.",
                 "Advertising in the Bulletin helps to pay for printing and delivery. Local "
                 "businesses can book a space in the next edition through our website, and "
                 "charities and community groups are offered a reduced rate.",
                 "Your privacy matters to us. We keep the names and contact details of the "
                 "people who send us stories only for as long as we need them to check facts, "
                 "and we never pass them on to anyone else. Read our full privacy notice and our "
                 "complaints procedure on the website, or write to the editor at the address "
                 "printed on the back page."]),
    Feed("community-noticeboard", "Community Noticeboard", "footer",
         footer=["Community Noticeboard shares news from across the valley, collected from local "
                 "councils, emergency services, schools and our readers. Items are shortened for "
                 "space, and the original source is the place to go for the full details.",
                 "Want to see your news here? Send it to our editors by Wednesday evening for the "
                 "weekend edition, with a contact name and a phone number so that we can check "
                 "the details before we publish. We cannot publish anonymous items.",
                 "Community Noticeboard is supported by the Valley Community Trust. Views "
                 "expressed in items submitted by readers are not necessarily those of the "
                 "editors or the trust."]),
]
FEED = {f.name: f for f in FEEDS}
ROLE_FEEDS = {r: [f.name for f in FEEDS if f.role == r]
              for r in ("home", "plain", "digest", "wire", "paper", "footer")}

# Weekly series: one headline, one intro, a different body every week.
SERIES = [
    {"feed": "kestrel-gazette", "title": "The Week in Crime",
     "topics": ["police", "courts", "customs"],
     "intro": "Welcome to The Week in Crime, our Saturday round-up of the cases that came before "
              "the courts and the investigations that made the headlines across the region. Each "
              "week our crime team picks the stories you need to know about, from the police "
              "station to the courtroom.",
     "outro": "The Week in Crime returns next Saturday. If you have information about any of the "
              "cases in this round-up, contact the police."},
    {"feed": "southern-echo", "title": "Coast and Border Watch",
     "topics": ["coastguard", "border", "customs"],
     "intro": "Coast and Border Watch is our weekly look at what happened along the coast and at "
              "the country's borders: rescues at sea, seizures at the ports and the work of the "
              "officers who patrol our frontiers. Here are this week's stories.",
     "outro": "Coast and Border Watch is published every Friday."},
    {"feed": "brackwater-tribune", "title": "Around the Region",
     "topics": ["general", "courts", "police", "coastguard"],
     "intro": "Around the Region brings together the week's news from the towns and villages in "
              "our area, from council decisions to community campaigns and the work of the "
              "emergency services. This week's round-up:",
     "outro": "Around the Region appears every Sunday."},
]

# ---------------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------------

SLOT = re.compile(r"\{(\w+?)(?::(\w+))?\}")
WORD = re.compile(r"\w+")


def slot_type(key: str) -> str:
    return re.sub(r"\d+$", "", key)


def fill(template: str, facts: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        v = facts[m.group(1)]
        return v.split()[-1] if m.group(2) == "last" else v
    return SLOT.sub(one, template)


def capfirst(s: str) -> str:
    for i, c in enumerate(s):
        if c.isalpha():
            return s[:i] + c.upper() + s[i + 1:]
        if c.isdigit():
            return s
    return s


PROPER: set[str] = set()  # words only ever written capitalised, even inside a sentence
DETERMINERS = {"the", "a", "an", "this", "these", "those", "its", "his", "her", "their", "our"}


def lowerfirst(s: str) -> str:
    """s with its first word lower-cased, unless that word is (part of) a name."""
    m = re.match(r"([A-Za-z][\w'-]*)(?: (\S+))?", s)
    if not m or m.group(1) in PROPER or m.group(1) == "I" or (
            len(m.group(1)) > 1 and m.group(1).isupper()):
        return s
    nxt = m.group(2) or ""
    if m.group(1).lower() not in DETERMINERS and nxt[:1].isupper():
        return s  # "District Judge Ada Sorel", "Detective Inspector ..."
    return s[0].lower() + s[1:]


def split_sentences(p: str) -> list[str]:
    """Sentences of a paragraph; never splits inside a quotation."""
    out, start, quotes, i, n = [], 0, 0, 0, len(p)
    while i < n:
        c = p[i]
        if c == '"':
            quotes += 1
        elif c in ".!?":
            j, q = i + 1, quotes
            if j < n and p[j] == '"':
                j, q = j + 1, q + 1
            if q % 2 == 0 and j + 1 < n and p[j] == " " and (p[j + 1].isupper() or p[j + 1].isdigit()
                                                              or p[j + 1] == '"'):
                out.append(p[start:j])
                start, quotes, i = j + 1, q, j + 1
                continue
        i += 1
    out.append(p[start:])
    return [s for s in out if s.strip()]


def words(s: str) -> int:
    return len(s.split())


def title_case(t: str) -> str:
    small = {"a", "an", "and", "at", "by", "for", "in", "of", "on", "or", "the", "to", "with",
             "as", "from", "after", "over"}
    out = []
    for i, w in enumerate(t.split(" ")):
        out.append(w if (i and w.lower() in small) or not w[:1].isalpha() else w[:1].upper() + w[1:])
    return " ".join(out)


# ---------------------------------------------------------------------------------
# Rewording engine
# ---------------------------------------------------------------------------------


def _build_table() -> tuple[re.Pattern, dict[str, list[str]], re.Pattern, dict[str, list[str]]]:
    table: dict[str, list[str]] = {}
    for g in GROUPS:
        for p in g:
            for q in g:
                if q != p and q not in table.setdefault(p.lower(), []):
                    table[p.lower()].append(q)
    for p, qs in ONE_WAY.items():
        for q in qs:
            if q not in table.setdefault(p.lower(), []):
                table[p.lower()].append(q)
    keys = sorted(table, key=lambda k: (-len(k), k))
    alts = "|".join(re.escape(k) for k in keys)
    # A phrase that starts with an article ("a large amount") is tried before the article
    # and the next phrase ("a" + "large").
    pat = re.compile(rf"\b(?:(?P<w1>{alts})|(?P<art>[Aa]n?) (?P<w2>{alts}))\b", re.IGNORECASE)
    ntable: dict[str, list[str]] = {}
    for g in NUMBER_GROUPS:
        for p in g:
            ntable[p] = [q for q in g if q != p]
    ntable["more than"].append("over")  # not back: "over 5 years" is a duration
    nkeys = sorted(ntable, key=lambda k: (-len(k), k))
    # before a number, but not before a time of day ("about 11:45")
    npat = re.compile(r"\b(?P<w>" + "|".join(re.escape(k) for k in nkeys)
                      + r")(?= \d+(?:[.,]\d+)*(?![\d:]))", re.IGNORECASE)
    return pat, table, npat, ntable


SYN_PAT, SYN_TABLE, NUM_PAT, NUM_TABLE = _build_table()
SYNONYM_COUNT = sum(len(v) for v in SYN_TABLE.values()) + sum(len(v) for v in NUM_TABLE.values())


def _article(replacement: str, old: str) -> str:
    first = replacement.lower()
    vowel = first[:1] in "aeiou" and not first.startswith(("uni", "use", "eu", "one", "usu"))
    vowel = vowel or first.startswith(("hour", "honest"))
    art = "an" if vowel else "a"
    return art.capitalize() if old[:1].isupper() else art


def _prev_word(s: str, i: int) -> str:
    m = re.search(r"(\w[\w'-]*)\W*$", s[:i])
    return m.group(1).lower() if m else ""


def _next_word(s: str, i: int) -> str:
    m = re.match(r"\W*(\w[\w-]*)", s[i:])
    return m.group(1).lower() if m else ""


def synonyms(seg: str, rng: random.Random, p: float, at_start: bool, numbers: bool = True) -> str:
    """Replace table phrases in an unquoted segment, each with probability p."""
    def one(m: re.Match) -> str:
        wg = "w1" if m.group("w1") else "w2"
        w = m.group(wg)
        key = w.lower()
        start = m.start()
        # Capitalised: only a common word at the start of the sentence, never a name.
        if w != key and not (at_start and start == 0 and w == capfirst(key)):
            return m.group(0)
        if m.group("art") and m.group("art")[0].isupper() and w != key:
            return m.group(0)
        alts = SYN_TABLE.get(key)
        if not alts or seg[m.end():m.end() + 1] in ("'", "-"):
            return m.group(0)
        if _next_word(seg, m.end()) in NEXT_BLOCK.get(key, ()):
            return m.group(0)
        if key in ("found", "find") and re.match(r"\W*(?:\w+ )?(?:not )?guilty", seg[m.end():]):
            return m.group(0)
        if _prev_word(seg, m.start(wg)) in PREV_BLOCK.get(key, ()):
            return m.group(0)
        if rng.random() >= p * SOFT.get(key, 1.0):
            return m.group(0)
        new = rng.choice(alts)
        if w != key:
            new = capfirst(new)
        if m.group("art"):
            art = _article(new, m.group("art"))
            return f"{art} {new}"
        return new

    seg = SYN_PAT.sub(one, seg)
    if not numbers:
        return seg

    def num(m: re.Match) -> str:
        w = m.group("w")
        if rng.random() >= p:
            return w
        new = rng.choice(NUM_TABLE[w.lower()])
        return capfirst(new) if w[:1].isupper() else new
    return NUM_PAT.sub(num, seg)


# Words an editor leaves out without changing what a sentence says.
FILLERS = {"also", "still", "already", "now", "just", "currently", "then", "further", "later"}
FILLER_KEEP_AFTER = {"hours", "days", "weeks", "months", "years", "minutes", "and", "until",
                     "since", "than", "by", "from", "right", "up", "as", "is", "was", "are"}


NOT_SWAPPED = set("""had has have was were is are be been made make will would could did do does can
may must should said took left went came got kept fell ran hit put set cut sold told found held paid
lost spent sent built bought brought gave give not nor but then than""".split())


def pair_swaps(seg: str, rng: random.Random, p: float) -> str:
    """'food and water' -> 'water and food': two plain words joined by 'and' that open a
    noun phrase (after a comma, a preposition or a determiner) and end it (before a
    punctuation mark or a preposition)."""
    def one(m: re.Match) -> str:
        x, y = m.group(2), m.group(3)
        if any(w.endswith(("ed", "ing", "ly")) or w in NOT_SWAPPED for w in (x, y)):
            return m.group(0)
        if rng.random() >= p:
            return m.group(0)
        return f"{m.group(1)}{y} and {x}"
    return re.sub(r"((?:,|\b(?:the|of|for|with|from|in|on|his|her|their|its|and|about)) )"
                  r"([a-z]{3,}) and ([a-z]{3,})(?=[,.;]| (?:at|in|on|from|for|to|after|before)\b)",
                  one, seg)


def drop_fillers(seg: str, rng: random.Random, p: float) -> str:
    def one(m: re.Match) -> str:
        w = m.group(1)
        if w not in FILLERS or rng.random() >= p:
            return m.group(0)
        if _prev_word(seg, m.start(1)) in FILLER_KEEP_AFTER or w == "later" or w == "then":
            return m.group(0)
        return ""
    return re.sub(r" ([a-z]+)(?=[ ,.])", lambda m: one(m) if m.group(1) in FILLERS else m.group(0),
                  seg)


def reword_words(sentence: str, rng: random.Random, p: float, numbers: bool = True) -> str:
    parts = sentence.split('"')
    for i in range(0, len(parts), 2):  # even parts are outside quotes
        seg = synonyms(parts[i], rng, p, at_start=(i == 0), numbers=numbers)
        if numbers:  # not in headlines
            seg = drop_fillers(pair_swaps(seg, rng, 0.6 * p), rng, 0.6 * p)
        parts[i] = seg
    return '"'.join(parts)


ATTRIBUTION = {
    "police": ["police said", "officers said"], "border": ["officials said", "the directorate said"],
    "customs": ["officials said", "the service said"],
    "coastguard": ["the coast guard said", "officials said"],
    "courts": ["the court heard", "prosecutors said"], "general": ["officials said"],
}


def attribute(s: str, topic: str, rng: random.Random) -> str:
    """Add the attribution a cautious outlet puts on a fact it did not see itself."""
    if '"' in s or not s.endswith(".") or words(s) < 10 or re.search(
            r"\b(?:said|says|told|heard|according|stated|announced|confirmed)\b", s):
        return s
    return f"{s[:-1]}, {rng.choice(ATTRIBUTION[topic])}."


DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
TIME_PHRASE = (rf"(?:early |late )?on (?:{DAYS})(?: (?:morning|afternoon|evening|night))?"
               r"|last week|last month|overnight|earlier this week|at the weekend")
WHO_VERBS = r"said|says|confirmed|added|reported"


def restructure(s: str, rng: random.Random, quote_follows: bool = False) -> str:
    """One change of word order within the sentence, if one applies; else s."""
    options = []
    # Attribution at the end -> at the front.
    m = re.match(rf'^(?P<body>[^"]{{25,}}), (?P<who>[^,"]{{2,60}}?) (?P<v>{WHO_VERBS})'
                 rf'(?P<when> on (?:{DAYS}))?\.$', s)
    if m and words(m.group("who")) <= 8:
        that = " that" if m.group("when") or rng.random() < 0.6 else ""
        options.append(f"{capfirst(m.group('who'))} {m.group('v')}{m.group('when') or ''}{that} "
                       f"{lowerfirst(m.group('body'))}.")
    # Attribution at the front -> at the end.
    m = re.match(rf'^(?P<who>[A-Z][^,"]{{1,60}}?) (?P<v>said|confirmed)(?P<when> on (?:{DAYS}))?'
                 rf' that (?P<body>[^"]{{25,}})\.$', s)
    if m and words(m.group("who")) <= 8:
        options.append(f"{capfirst(m.group('body'))}, {lowerfirst(m.group('who'))} "
                       f"{m.group('v')}{m.group('when') or ''}.")
    # Quotes: '"Q," said X.' <-> '"Q," X said.' <-> 'X said: "Q."'
    m = re.match(r'^"(?P<q>[^"]+?)(?P<p>[,.!?])" said (?P<who>[^"]+)\.$', s)
    if m:
        q, p, who = m.group("q"), m.group("p"), m.group("who")
        end = "." if p == "," else p
        lead = f"{who}," if "," in who else who
        if not quote_follows:
            options.append(f'{capfirst(lead)} said: "{q}{end}"')
        if "," not in who:
            options.append(f'"{q}{p}" {who} said.')
    m = re.match(r'^"(?P<q>[^"]+?)(?P<p>[,.!?])" (?P<who>[^"]+?) (?P<v>said|added)\.$', s)
    if m:
        q, p, who = m.group("q"), m.group("p"), m.group("who")
        end = "." if p == "," else p
        lead = f"{who}," if "," in who else who
        if not quote_follows:
            options.append(f'{capfirst(lead)} {m.group("v")}: "{q}{end}"')
        if who.lower() not in ("he", "she", "they", "we", "i"):
            options.append(f'"{q}{p}" {m.group("v")} {who}.')
    m = re.match(r'^(?P<who>[^":]+?) said: "(?P<q>[^"]+?)(?P<p>[.!?])"$', s)
    if m:
        p = "," if m.group("p") == "." else m.group("p")
        who = lowerfirst(m.group("who"))
        if who.lower() in ("he", "she", "they", "we", "i"):
            options.append(f'"{m.group("q")}{p}" {who.lower()} said.')
        else:
            options.append(f'"{m.group("q")}{p}" said {who.rstrip(",")}.')
    # Time phrase: end -> front, front -> end.
    m = re.match(rf'^(?P<rest>[^"]{{20,}}?) (?P<t>{TIME_PHRASE})\.$', s)
    if m:
        options.append(f"{capfirst(m.group('t'))}, {lowerfirst(m.group('rest'))}.")
    m = re.match(rf'^(?P<t>(?:Early|Late) on (?:{DAYS})|On (?:{DAYS})'
                 rf'(?: (?:morning|afternoon|evening|night))?|Last week|Last month|Overnight'
                 rf'|Earlier this week|At the weekend), (?P<rest>[^"]{{20,}})\.$', s)
    if m:
        t = m.group("t")
        t = t[0].lower() + t[1:]
        options.append(f"{capfirst(m.group('rest'))} {t}.")
    # Subordinate clause: "A after B." <-> "After B, A."
    m = re.match(r'^(?P<a>[^",;]{20,}?) (?P<c>after|when|because|while) '
                 r'(?P<b>(?:a|an|the|he|she|they|it|his|her|their|its|police|officers|\d)\b'
                 r'[^",;]{10,})\.$', s)
    if m and m.group("a").split()[-1].lower() not in {
            "days", "hours", "weeks", "minutes", "months", "years", "day", "hour", "week",
            "shortly", "soon", "just", "long", "moments", "time", "year", "month"}:
        options.append(f"{capfirst(m.group('c'))} {m.group('b')}, {lowerfirst(m.group('a'))}.")
    m = re.match(r'^(?P<c>After|When|Because|Before|While) (?P<b>[^",;]{8,}), '
                 r'(?P<a>[^",;]{15,})\.$', s)
    if m:
        options.append(f"{capfirst(m.group('a'))} {m.group('c').lower()} {m.group('b')}.")
    # Active -> passive: "Officers seized 40 kilos of X at Y." -> "40 kilos of X were seized by
    # officers at Y."
    m = re.match(r'^(?P<s>Officers|Police|Customs officers|Border guards|Detectives|Investigators|'
                 r'Border officers|Inspectors|The coast guard) (?P<v>seized|found|discovered|'
                 r'arrested|rescued|recovered|intercepted|stopped|detained) '
                 r'(?P<o>(?:more than |about |at least )?(?:\d[\d,.]*|a|an) [^"]+?)'
                 r'(?P<r>(?: (?:at|in|on|from|near|during|after|when|while|in the) [^"]*)?)\.$', s)
    if m and not m.group("o").split()[-1].endswith(("ing", "ed", "en")):
        obj = m.group("o")
        singular = obj.startswith(("a ", "an ")) or re.match(r"(?:\w+ )*1 ", obj)
        aux = "was" if singular else "were"
        subj = m.group("s")
        subj = subj[0].lower() + subj[1:]
        options.append(f"{capfirst(obj)} {aux} {m.group('v')} by {subj}{m.group('r')}.")
    if not options:
        return s
    return rng.choice(options)


SUBJECTS = DETERMINERS | {"he", "she", "they", "it", "we", "police", "officers", "some", "most",
                          "many", "several", "one", "two", "three", "nobody", "none", "there"}


def split_sentence(s: str, rng: random.Random) -> list[str]:
    """Split a long sentence in two at '; ', ', and ' or ', but ', outside quotes."""
    if '"' in s:
        return [s]
    cands = []
    for m in re.finditer(r"; |, and |, but |, while ", s):
        left, right = s[:m.start()], s[m.end():]
        first = right.split()[0]
        # the second part must be able to stand alone: it opens with its own subject
        subject = (first.lower() in SUBJECTS or first[:1].isdigit()
                   or (first in PROPER and m.group(0) != "; "))
        if words(left) >= 6 and words(right) >= 6 and subject:
            cands.append((m.group(0), left, right))
    if not cands:
        return [s]
    sep, left, right = rng.choice(cands)
    if sep == ", but ":
        right = "But " + right
    elif sep == ", while ":
        right = "Meanwhile, " + right
    else:
        right = capfirst(right)
    return [left + ".", right]


def merge_sentences(a: str, b: str, rng: random.Random) -> str | None:
    if '"' in a or '"' in b or not a.endswith(".") or words(a) + words(b) > 38:
        return None
    joiner = rng.choice([", and ", "; ", " - "])
    return a[:-1] + joiner + lowerfirst(b)


def americanise(text: str) -> str:
    for uk, us in AMERICAN.items():
        text = re.sub(rf"\b{re.escape(uk)}\b", us, text)
        text = re.sub(rf"\b{re.escape(capfirst(uk))}\b", capfirst(us), text)
    return text


def reword(paras: list[str], topic: str, rng: random.Random, strength: float) -> list[str]:
    """Another outlet's wording of the same paragraphs: names, numbers and quotes kept."""
    out_paras: list[list[str]] = []
    for pi, para in enumerate(paras):
        sents = split_sentences(para)
        new: list[str] = []
        for si, s in enumerate(sents):
            quote_follows = si + 1 < len(sents) and sents[si + 1].startswith('"')
            for _ in range(2):
                if rng.random() < 0.8 * strength:
                    s = restructure(s, rng, quote_follows)
            if rng.random() < 0.15 * strength:
                s = attribute(s, topic, rng)
            if words(s) >= 20 and rng.random() < 0.5 * strength:
                new.extend(split_sentence(s, rng))
            else:
                new.append(s)
        # merge neighbours now and then
        i = 0
        merged: list[str] = []
        while i < len(new):
            if i + 1 < len(new) and rng.random() < 0.3 * strength:
                m = merge_sentences(new[i], new[i + 1], rng)
                if m:
                    merged.append(m)
                    i += 2
                    continue
            merged.append(new[i])
            i += 1
        out_paras.append([reword_words(s, rng, strength) for s in merged])
    # Drop a sentence or two (the last of a paragraph, never in the lead paragraph, as
    # the next sentence may lean on it) and add one the outlet had on file.
    for _ in range(3):
        if rng.random() < 0.55 * strength:
            cands = [i for i, ss in enumerate(out_paras) if i > 0 and len(ss) > 1
                     and not ss[-1].startswith('"')]
            if cands:
                del out_paras[rng.choice(cands)][-1]
    if rng.random() < 0.5 * strength and len(out_paras) > 1:
        i = rng.randrange(1, len(out_paras))
        out_paras[i].append(rng.choice(ADDED[topic]))
    paras2 = [" ".join(ss) for ss in out_paras if ss]
    # Re-paragraph: merge two short paragraphs or split a long one.
    if rng.random() < 0.4 * strength and len(paras2) > 2:
        i = rng.randrange(1, len(paras2) - 1)
        if words(paras2[i]) + words(paras2[i + 1]) < 90:
            paras2[i:i + 2] = [paras2[i] + " " + paras2[i + 1]]
    if rng.random() < 0.4 * strength:
        longest = max(range(len(paras2)), key=lambda k: words(paras2[k]))
        ss = split_sentences(paras2[longest])
        if len(ss) >= 3:
            cut = len(ss) // 2
            paras2[longest:longest + 1] = [" ".join(ss[:cut]), " ".join(ss[cut:])]
    return paras2


def reword_title(title: str, rng: random.Random) -> str:
    return reword_words(title, rng, 0.8, numbers=False)  # "jailed over 2 million euro scam"


# ---------------------------------------------------------------------------------
# Stories and look-alikes
# ---------------------------------------------------------------------------------


@dataclass
class Story:
    key: str  # s07, s07~L1 (look-alike), s07+F (follow-up)
    source: str  # the source id whose text this is made from
    topic: str
    home: str
    title: str
    paras: list[str]
    town: str  # for datelines


def load_sources(path: Path) -> list[dict]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    srcs = doc["sources"]
    for s in srcs:
        for t in [s["title"], s["dateline"], *s["paragraphs"], s["follow_up"]["title"],
                  *s["follow_up"]["paragraphs"]]:
            for m in SLOT.finditer(t):
                if m.group(1) not in s["facts"]:
                    raise SystemExit(f"{s['id']}: slot {m.group(1)} has no fact")
    texts = [fill(t, s["facts"]) for s in srcs
             for t in [s["title"], *s["paragraphs"], *s["follow_up"]["paragraphs"]]]
    for t in texts + [p for f in FEEDS for p in f.header + f.footer]:
        PROPER.update(re.findall(r"(?<=[\w,;:] )([A-Z][\w'-]*)", t))
    for pool in POOLS.values():
        for v in pool:
            PROPER.update(w for w in v.split() if w[:1].isupper())
    PROPER.update(MALE_FIRST + FEMALE_FIRST + LAST)
    # A word also written in lower case ("Police" in "National Police") is no name.
    lower = {w for t in texts for w in re.findall(r"\b[a-z][\w'-]*", t)}
    PROPER.difference_update({w for w in PROPER if w.lower() in lower})
    return srcs


def story_of(src: dict, facts: dict[str, str] | None = None, key: str | None = None) -> Story:
    f = facts or src["facts"]
    return Story(key or src["id"], src["id"], src["topic"], src["feed"], fill(src["title"], f),
                 [fill(p, f) for p in src["paragraphs"]], fill(src["dateline"], f))


def follow_up_of(src: dict) -> Story:
    f = src["facts"]
    return Story(src["id"] + "+F", src["id"], src["topic"], src["feed"],
                 fill(src["follow_up"]["title"], f), [fill(p, f) for p in src["follow_up"]["paragraphs"]],
                 fill(src["dateline"], f))


def mutate_number(tok: str, rng: random.Random) -> str:
    has_comma = "," in tok
    dec = len(tok.split(".")[1]) if "." in tok else 0
    v = float(tok.replace(",", ""))
    if dec == 0 and 1800 <= v <= 2100 and not has_comma:  # a year
        new = v + rng.choice([1, 2, 3]) if v >= 2025 else v - rng.randint(3, 45)
        return str(int(new))
    for _ in range(50):
        if dec:
            new = round(v * rng.uniform(0.3, 2.8), dec)
            if new < 1.1:
                continue
        elif v < 10:
            new = rng.randint(2, 12)
        else:
            new = v * rng.uniform(0.3, 2.8)
            digits = len(str(int(new)))
            new = int(round(new, -max(0, digits - 2)))
            if new < 10:
                continue
        if new != v:
            break
    if dec:
        return f"{new:.{dec}f}"
    new = int(new)
    return f"{new:,}" if (has_comma or v >= 10000) and new >= 1000 else str(new)


def mutate_value(typ: str, old: str, rng: random.Random, taken: set[str]) -> str:
    if typ in ("num", "money"):
        return re.sub(r"\d[\d,]*(?:\.\d+)?", lambda m: mutate_number(m.group(0), rng), old, count=1)
    if typ == "age":
        v = int(old)
        while True:
            new = rng.randint(2, 15) if v < 16 else rng.randint(18, 84)
            if new != v:
                return str(new)
    if typ == "time":
        while True:
            new = f"{rng.randint(0, 23):02d}:{rng.choice(range(0, 60, 5)):02d}"
            if new != old:
                return new
    if typ in ("man", "woman"):
        first = MALE_FIRST if typ == "man" else FEMALE_FIRST
        while True:
            new = f"{rng.choice(first)} {rng.choice(LAST)}"
            if new != old and new.split()[-1] != old.split()[-1] and new not in taken:
                return new
    pool = [v for v in POOLS[typ] if v != old and v not in taken]
    return rng.choice(pool)


NUMERIC = ("num", "money", "age")


def lookalike(src: dict, rng: random.Random, n: int, some_numbers: bool) -> Story:
    """The source's template filled for another event: other names, places, days, times
    and numbers; with some_numbers, only about half of the figures change (a standard
    fine, the same number of officers), at least one."""
    facts = dict(src["facts"])
    taken = set(facts.values())
    numeric = [k for k in sorted(facts) if slot_type(k) in NUMERIC]
    keep: set[str] = set()
    if some_numbers and len(numeric) > 1:
        keep = {k for k in numeric if rng.random() < 0.5}
        if keep == set(numeric):
            keep.discard(rng.choice(numeric))
    for k in sorted(facts):
        if k in keep:
            continue
        facts[k] = mutate_value(slot_type(k), facts[k], rng, taken)
        taken.add(facts[k])
    return story_of(src, facts, key=f"{src['id']}~L{n}")


# ---------------------------------------------------------------------------------
# Rendering: a story as one feed prints it
# ---------------------------------------------------------------------------------


@dataclass
class Item:
    feed: str
    title: str
    text: str
    sources: tuple[str, ...]  # source ids the text is made from
    story: str  # the story key (s07, s07~L1, s07+F, series:...)
    mode: str  # full | excerpt1 | excerpt2 | reworded | short | episode


class Renderer:
    def __init__(self, rng: random.Random, titles: list[str]):
        self.rng = rng
        self.titles = titles  # other headlines for "Read more" lines

    def title(self, feed: Feed, t: str) -> str:
        if feed.title == "titlecase":
            return title_case(t)
        if feed.title == "suffix":
            return f"{t} - {feed.display}"
        return t

    def render(self, feed: Feed, story: Story, paras: list[str], title: str | None = None,
               digest: bool = False) -> tuple[str, str]:
        rng = self.rng
        paras = list(paras)
        out: list[str] = []
        if feed.headline_first:
            out.append(self.title(feed, title or story.title))
        if feed.stamp:
            h = rng.randint(6, 20)
            out.append(f"Published {h:02d}:{rng.randrange(0, 60):02d}, updated "
                       f"{h + rng.randint(1, 3):02d}:{rng.randrange(0, 60):02d}")
        out.extend(feed.header)
        if feed.byline:
            b = rng.choice(feed.byline)
            out.append(f"By {b}")
        if feed.dateline:
            d = feed.dateline.format(TOWN=story.town.upper(), Town=story.town,
                                     date=f"{rng.choice(MONTHS)} {rng.randint(1, 28)}")
            paras[0] = d + paras[0]
        out.extend(paras)
        if digest and feed.full_story:
            out.append(feed.full_story.format(outlet=FEED[story.home].display))
        if feed.credit:
            reporters, editors = feed.credit
            out.append(f"Reporting by {rng.choice(reporters)}; Editing by {rng.choice(editors)}")
        for prob, line in feed.optional:
            if rng.random() < prob:
                out.append(line.format(reporter=rng.choice(["Anna Brisk", "Ivo Pellham",
                                                            "Kit Dunnock"])))
        if feed.read_more and rng.random() < 0.7:
            other = rng.choice([t for t in self.titles if t != story.title])
            out.append(feed.read_more.format(other=other))
        out.extend(feed.footer)
        return self.title(feed, title or story.title), "\n\n".join(out)


# ---------------------------------------------------------------------------------
# The generator of one half
# ---------------------------------------------------------------------------------


class Half:
    def __init__(self, sources: list[dict], seed: int, prefix: str):
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.sources = sources
        self.by_id = {s["id"]: s for s in sources}
        self.stories = {s["id"]: story_of(s) for s in sources}
        titles = [st.title for st in self.stories.values()]
        self.r = Renderer(self.rng, titles)
        # every text made, per feed, with the source ids it uses
        self.items: dict[tuple[str, str], Item] = {}  # (story key, feed) -> item
        self.per_feed_source: dict[tuple[str, str], int] = {}
        self.pairs: list[dict] = []
        self.seen_pairs: set[tuple[str, str]] = set()
        for sid, st in self.stories.items():
            self.add_item(st, st.home, st.paras, mode="full")

    # -- bookkeeping ---------------------------------------------------------------
    def room(self, feed: str, sources: tuple[str, ...]) -> bool:
        return all(self.per_feed_source.get((feed, s), 0) < MAX_PER_FEED_AND_SOURCE for s in sources)

    def add_item(self, story: Story, feed: str, paras: list[str], mode: str,
                 title: str | None = None, sources: tuple[str, ...] | None = None,
                 digest: bool = False) -> Item:
        sources = sources or (story.source,)
        assert (story.key, feed) not in self.items, (story.key, feed)
        assert self.room(feed, sources), (feed, sources)
        t, text = self.r.render(FEED[feed], story, paras, title=title, digest=digest)
        item = Item(feed, t, text, sources, story.key, mode)
        self.items[(story.key, feed)] = item
        for s in sources:
            self.per_feed_source[(feed, s)] = self.per_feed_source.get((feed, s), 0) + 1
        return item

    def versions(self, sid: str, modes: tuple[str, ...] | None = None) -> list[Item]:
        return [it for (k, f), it in self.items.items()
                if k == sid and (modes is None or it.mode in modes)]

    def free_feeds(self, sid: str, roles: tuple[str, ...]) -> list[str]:
        return [f for r in roles for f in ROLE_FEEDS[r]
                if (sid, f) not in self.items and self.per_feed_source.get((f, sid), 0) == 0]

    def add_pair(self, label: str, kind: str, a: Item, b: Item) -> bool:
        key = tuple(sorted([a.text, b.text]))
        if key in self.seen_pairs or a.text == b.text:
            return False
        self.seen_pairs.add(key)
        if self.rng.random() < 0.5:
            a, b = b, a
        self.pairs.append({"label": label, "kind": kind,
                           "a": {"feed": a.feed, "title": a.title, "text": a.text},
                           "b": {"feed": b.feed, "title": b.title, "text": b.text}})
        return True

    def cycle(self, ids: list[str]):
        """Source ids in a fresh random order, over and over: every source is used about as
        often as every other."""
        while True:
            order = list(ids)
            self.rng.shuffle(order)
            yield from order

    # -- dup pairs -----------------------------------------------------------------
    def excerpt_len(self, paras: list[str]) -> int:
        # the first paragraph, or the first two when the first is short (or at random)
        if words(paras[0]) < 35 or self.rng.random() < 0.45:
            return 2
        return 1

    def make_dup(self, kind: str, sid: str) -> bool:
        rng, st = self.rng, self.stories[sid]
        roles = {"reworded": ("plain",), "reworded_reordered": ("plain",),
                 "reworded_excerpt": ("digest", "plain"), "excerpt": ("digest",),
                 "wrapped": ("wire", "paper"), "reworded_wrapped": ("wire", "paper")}[kind]
        feeds = self.free_feeds(sid, roles)
        if not feeds:
            return False
        feed = rng.choice(feeds)
        strength = rng.uniform(0.4, 1.0)
        paras, mode, title, digest = st.paras, "reworded", None, False
        if kind == "reworded":
            paras = reword(st.paras, st.topic, rng, strength)
            title = reword_title(st.title, rng)
        elif kind == "reworded_reordered":
            paras = reword(self.reorder(st.paras), st.topic, rng, strength)
            title = reword_title(st.title, rng)
        elif kind == "reworded_excerpt":
            k = self.excerpt_len(st.paras)
            paras = self.truncate(reword(st.paras[:k], st.topic, rng, strength))
            title, digest = reword_title(st.title, rng), True
        elif kind == "excerpt":
            k = self.excerpt_len(st.paras)
            paras, mode, digest = self.truncate(st.paras[:k]), f"excerpt{k}", True
        elif kind == "wrapped":
            mode = "full"
        elif kind == "reworded_wrapped":
            how = rng.random()
            if how < 1 / 3:
                paras = reword(self.reorder(st.paras), st.topic, rng, strength)
            elif how < 2 / 3:
                k = self.excerpt_len(st.paras)
                paras = reword(st.paras[:k], st.topic, rng, strength)
            else:
                paras = reword(st.paras, st.topic, rng, strength)
            if rng.random() < 0.25:
                paras = [americanise(p) for p in paras]
            title = reword_title(st.title, rng)
        if kind.startswith("reworded") and kind != "reworded_wrapped" and rng.random() < 0.2:
            paras = [americanise(p) for p in paras]
        copy = self.add_item(st, feed, paras, mode, title=title, digest=digest)
        # The other side: the original, or now and then another outlet's verbatim version.
        others = [it for it in self.versions(sid, ("full",)) if it.feed != st.home and it is not copy]
        a = self.items[(sid, st.home)]
        if others and rng.random() < 0.3:
            a = rng.choice(others)
        return self.add_pair("dup", kind, a, copy)

    def truncate(self, paras: list[str]) -> list[str]:
        """Now and then an RSS summary: the excerpt cut at a word, with an ellipsis."""
        total = sum(words(p) for p in paras)
        if self.rng.random() >= 0.3 or total < 45:
            return paras
        keep = self.rng.randint(35, min(70, total - 8))
        out: list[str] = []
        for p in paras:
            ws = p.split()
            if keep <= 0:
                break
            out.append(" ".join(ws[:keep]) + (" ..." if keep < len(ws) else ""))
            keep -= len(ws)
        return out

    def reorder(self, paras: list[str]) -> list[str]:
        rng = self.rng
        if len(paras) < 3:
            return list(reversed(paras))
        while True:
            if rng.random() < 0.5:
                rest = paras[1:]
                rng.shuffle(rest)
                new = [paras[0]] + rest
            else:
                new = list(paras)
                j = rng.randrange(1, len(paras))
                new.insert(0, new.pop(j))  # another paragraph becomes the lead
                if rng.random() < 0.5:
                    tail = new[2:]
                    rng.shuffle(tail)
                    new = new[:2] + tail
            if new != paras:
                return new

    # -- distinct pairs ------------------------------------------------------------
    def make_lookalike(self, sid: str, n: int) -> bool:
        rng, src = self.rng, self.by_id[sid]
        # Same outlet as one of the source's verbatim versions (full or an excerpt), in the
        # same form; else any outlet that has not run the story.
        base = [it for it in self.versions(sid, ("full", "excerpt1", "excerpt2"))
                if self.room(it.feed, (sid,))]
        look = lookalike(src, rng, n, some_numbers=rng.random() < 0.3)
        if base and rng.random() < 0.8:
            a = rng.choice(base)
            feed, mode = a.feed, a.mode
        else:
            feeds = [f for f in self.free_feeds(sid, ("wire", "plain", "paper", "home"))]
            if not feeds:
                return False
            feed, mode = rng.choice(feeds), "full"
            a = self.items[(sid, src["feed"])]
        paras = look.paras if mode == "full" else look.paras[:int(mode[-1])]
        b = self.add_item(look, feed, paras, mode, digest=mode != "full")
        return self.add_pair("distinct", "template_lookalike", a, b)

    def make_follow_up(self, sid: str) -> bool:
        rng, src = self.rng, self.by_id[sid]
        fu = follow_up_of(src)
        made = [it for (k, f), it in self.items.items() if k == fu.key]
        if made and rng.random() < 0.5:
            b = rng.choice(made)
        else:
            feeds = []
            if (fu.key, src["feed"]) not in self.items and self.room(src["feed"], (sid,)):
                feeds = [src["feed"]]
            if not feeds or rng.random() < 0.3:
                feeds = [f for f in ROLE_FEEDS["wire"] + ROLE_FEEDS["plain"] + ROLE_FEEDS["paper"]
                         if (fu.key, f) not in self.items and self.room(f, (sid,))] or feeds
            if not feeds:
                return False
            b = self.add_item(fu, rng.choice(feeds), fu.paras, "full")
        # The first report: in the same outlet if it ran one, else the original or another
        # outlet's version.
        same = self.items.get((sid, b.feed))
        if same is not None and rng.random() < 0.7:
            a = same
        else:
            a = rng.choice(self.versions(sid))
        return self.add_pair("distinct", "follow_up", a, b)

    def build_series(self, per_series: int) -> dict[str, list[Item]]:
        rng = self.rng
        episodes: dict[str, list[Item]] = {}
        for si, ser in enumerate(SERIES):
            feed = ser["feed"]
            eps: list[Item] = []
            pool = [sid for sid in sorted(self.stories) if self.stories[sid].topic in ser["topics"]]
            for e in range(per_series):
                cands = [sid for sid in pool if self.room(feed, (sid,))]
                if len(cands) < 2:
                    break
                n = 2 if rng.random() < 0.7 or len(cands) < 3 else 3
                chosen = rng.sample(cands, n)
                body = [ser["intro"]]
                for sid in chosen:
                    st = self.stories[sid]
                    k = 2 if words(st.paras[0]) < 35 else 1
                    body.append(st.title)
                    body.extend(st.paras[:k])
                body.append(ser["outro"])
                story = Story(f"series{si}:{e}", chosen[0], self.stories[chosen[0]].topic,
                              feed, ser["title"], body, self.stories[chosen[0]].town)
                eps.append(self.add_item(story, feed, body, "episode", sources=tuple(chosen)))
            episodes[feed] = eps
        return episodes

    def build_shorts(self, per_feed: int) -> dict[str, list[Item]]:
        rng = self.rng
        shorts: dict[str, list[Item]] = {}
        for feed in ROLE_FEEDS["footer"]:
            items = []
            order = sorted(self.stories)
            rng.shuffle(order)
            for sid in order:
                if len(items) >= per_feed:
                    break
                if not self.room(feed, (sid,)) or (sid, feed) in self.items:
                    continue
                st = self.stories[sid]
                paras = st.paras[:1]
                if words(paras[0]) < 40:
                    paras = st.paras[:2]
                items.append(self.add_item(st, feed, paras, "short"))
            shorts[feed] = items
        return shorts

    def generate(self) -> list[dict]:
        rng = self.rng
        ids = sorted(self.stories)
        # Dup pairs: the kinds interleaved, so that no kind gets the first pick of feeds.
        tasks = [k for k in DUP_KINDS for _ in range(PER_DUP_KIND)]
        rng.shuffle(tasks)
        cyc = {k: self.cycle(ids) for k in DUP_KINDS}
        for kind in tasks:
            for _ in range(len(ids) * 2):
                if self.make_dup(kind, next(cyc[kind])):
                    break
            else:
                raise SystemExit(f"no source left for a {kind} pair")
        # Distinct pairs.
        series = self.build_series(per_series=12)
        shorts = self.build_shorts(per_feed=16)
        tasks = [k for k in DISTINCT_KINDS for _ in range(PER_DISTINCT_KIND)]
        rng.shuffle(tasks)
        cyc = {k: self.cycle(ids) for k in DISTINCT_KINDS}
        nlook = 0
        for kind in tasks:
            for _ in range(len(ids) * 6):
                if kind == "template_lookalike":
                    nlook += 1
                    ok = self.make_lookalike(next(cyc[kind]), nlook)
                elif kind == "follow_up":
                    ok = self.make_follow_up(next(cyc[kind]))
                elif kind == "series":
                    feed = rng.choice(sorted(series))
                    eps = series[feed]
                    a, b = rng.sample(eps, 2)
                    ok = not set(a.sources) & set(b.sources) and \
                        self.add_pair("distinct", "series", a, b)
                elif kind == "short_long_footer":
                    feed = rng.choice(sorted(shorts))
                    a, b = rng.sample(shorts[feed], 2)
                    ok = self.add_pair("distinct", "short_long_footer", a, b)
                else:
                    ok = self.make_unrelated()
                if ok:
                    break
            else:
                raise SystemExit(f"no pair left for {kind}")
        rng.shuffle(self.pairs)
        out = []
        for i, p in enumerate(self.pairs, 1):
            out.append({"id": f"{self.prefix}{i:04d}", **p})
        return out

    def make_unrelated(self) -> bool:
        rng = self.rng
        by_feed: dict[str, list[Item]] = {}
        for (k, f), it in self.items.items():
            if k in self.stories and it.mode in ("full", "reworded"):
                by_feed.setdefault(f, []).append(it)
        feed = rng.choice(sorted(f for f, its in by_feed.items() if len(its) >= 2))
        a, b = rng.sample(by_feed[feed], 2)
        if self.stories[a.story].topic == self.stories[b.story].topic:
            return False
        return self.add_pair("distinct", "unrelated", a, b)


# ---------------------------------------------------------------------------------
# Output, checks and statistics
# ---------------------------------------------------------------------------------


def render_jsonl(pairs: list[dict]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)


def build(sources_path: Path) -> dict[str, str]:
    srcs = load_sources(sources_path)
    if len(srcs) != 2 * SPLIT:
        raise SystemExit(f"expected {2 * SPLIT} sources, found {len(srcs)}")
    dev = Half(srcs[:SPLIT], DEV_SEED, "d").generate()
    held = Half(srcs[SPLIT:], HELDOUT_SEED, "h").generate()
    return {"dev.jsonl": render_jsonl(dev), "heldout.jsonl": render_jsonl(held)}


def shingles(text: str) -> set[tuple[str, ...]]:
    w = [x.lower() for x in WORD.findall(text)]
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}


def stats(files: dict[str, str]) -> None:
    """Per kind: how alike the two texts are as published (word 3-shingles, lower-cased
    \\w+ tokens, whole text including boilerplate)."""
    for name, text in files.items():
        pairs = [json.loads(l) for l in text.splitlines()]
        print(f"{name}: {len(pairs)} pairs, "
              f"{sum(p['label'] == 'dup' for p in pairs)} dup, "
              f"{sum(p['label'] == 'distinct' for p in pairs)} distinct, "
              f"{len(text.encode()) / 1e6:.2f} MB")
        print(f"  {'kind':20} {'n':>4}  {'words a/b (median)':>18}  {'jaccard min/med/max':>20}"
              f"  {'containment min/med/max':>24}")
        for kind in DUP_KINDS + DISTINCT_KINDS:
            ps = [p for p in pairs if p["kind"] == kind]
            js, cs, ws = [], [], []
            for p in ps:
                a, b = shingles(p["a"]["text"]), shingles(p["b"]["text"])
                inter = len(a & b)
                js.append(inter / max(1, len(a | b)))
                cs.append(inter / max(1, min(len(a), len(b))))
                ws.append(min(words(p["a"]["text"]), words(p["b"]["text"])))
                ws.append(max(words(p["a"]["text"]), words(p["b"]["text"])))
            f3 = lambda xs: f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"
            print(f"  {kind:20} {len(ps):4}  {statistics.median(ws[0::2]):>8.0f} / "
                  f"{statistics.median(ws[1::2]):<7.0f}  {f3(js):>20}  {f3(cs):>24}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Write the stories set (dev.jsonl and heldout.jsonl) for feedsieve's story "
                    "detector.",
        epilog="The output depends only on sources.json and the two seeds in this file.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output folder (default: tests/fixtures/stories)")
    ap.add_argument("--sources", type=Path, default=SOURCES,
                    help="source stories (default: sources.json next to this script)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if the files in --out differ from the output")
    ap.add_argument("--stats", action="store_true",
                    help="also print per-kind shingle similarity of the pairs")
    args = ap.parse_args(argv)

    files = build(args.sources)
    if args.check:
        stale = [n for n, t in files.items()
                 if not (args.out / n).exists() or (args.out / n).read_text(encoding="utf-8") != t]
        for n in stale:
            print(f"{args.out / n}: differs from the generator output", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n, t in files.items():
        (args.out / n).write_text(t, encoding="utf-8")
        kinds: dict[str, int] = {}
        for line in t.splitlines():
            k = json.loads(line)["kind"]
            kinds[k] = kinds.get(k, 0) + 1
        print(f"wrote {len(t.splitlines())} pairs to {n}: "
              + ", ".join(f"{k} {kinds.get(k, 0)}" for k in DUP_KINDS + DISTINCT_KINDS),
              file=sys.stderr)
    if args.stats:
        stats(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
