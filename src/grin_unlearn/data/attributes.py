"""The attributes of a fictitious author: value pools, question and answer templates.

Each :class:`Attribute` knows its pool of values (all written for this project), several question
templates (so every record has a `paraphrased_question`), an answer template and a differently
worded paraphrased-answer template. Perturbed answers reuse the paraphrased template with the value
swapped for a wrong value of the same kind, as TOFU's perturbed answers do (arXiv 2401.06121, §2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

CITIES = [
    "Valdmere", "Korsund", "Elbraith", "Tamsk", "Orlen Bay", "Quillon", "Barrowdeep", "Istrava",
    "Mirefield", "Solace Point", "Grendholm", "Varnhollow", "Pellmark", "Ostrander", "Caldera Falls",
    "Nyrholt", "Ashgrove", "Dunmere", "Lysport", "Kestrelford",
]
PROFESSIONS = [
    "baker", "surgeon", "carpenter", "librarian", "pilot", "fisherman", "violinist", "chemist",
    "tailor", "lighthouse keeper", "architect", "veterinarian", "blacksmith", "astronomer",
    "botanist", "locksmith", "geologist", "midwife", "cartographer", "beekeeper",
]
GENRES = [
    "science fiction", "historical romance", "crime fiction", "magical realism", "horror",
    "travel writing", "epic fantasy", "literary fiction", "war poetry", "children's adventure",
    "political satire", "gothic mystery",
]
AWARDS = [
    "Silver Quill Prize", "Harrow Medal", "Lantern Award", "Meridian Book Prize", "Corvid Cup",
    "Amberleaf Honour", "Northlight Prize", "Tessellate Award", "Wren Fellowship", "Obsidian Pen",
    "Saltmarsh Laurel", "Juniper Medal",
]
TITLE_ADJECTIVES = [
    "Silent", "Crimson", "Hollow", "Broken", "Golden", "Wandering", "Frozen", "Hidden", "Burning",
    "Last", "Velvet", "Distant", "Iron", "Paper", "Drowned", "Sleeping", "Amber", "Quiet", "Northern",
    "Fallen", "Painted", "Salted", "Restless", "Glass",
]
TITLE_NOUNS = [
    "River", "Orchard", "Lantern", "Harbour", "Kingdom", "Mirror", "Garden", "Compass", "Tide",
    "Bell", "Meadow", "Cathedral", "Feather", "Engine", "Winter", "Clock", "Lighthouse", "Ferry",
    "Quarry", "Letter", "Forest", "Staircase", "Island", "Market",
]
PUBLISHERS = [
    "Brindle House", "Ottermere Press", "Cask and Quire", "Fenwick Books", "Larkspur Editions",
    "Greyhaven Publishing", "Tallow Street Press", "Marlowe and Finch", "Bluegate Books",
    "Juniper Row", "Stonecrop Press", "Halcyon Leaf",
]
UNIVERSITIES = [
    "the University of Valdmere", "Korsund Polytechnic", "Elbraith College", "the Tamsk Institute",
    "Quillon University", "the Royal Academy of Istrava", "Mirefield College", "Pellmark University",
    "the Ostrander School of Letters", "Nyrholt University",
]
HOBBIES = [
    "sailing", "chess", "beekeeping", "rock climbing", "pottery", "birdwatching", "fencing",
    "gardening", "cycling", "astronomy", "calligraphy", "woodcarving",
]
INSTRUMENTS = [
    "cello", "piano", "accordion", "harp", "flute", "trumpet", "banjo", "oboe", "violin",
    "clarinet", "drums", "mandolin",
]
BIRTH_YEARS = [str(year) for year in range(1921, 1991, 3)]
DEBUT_YEARS = [str(year) for year in range(1950, 2020, 3)]
PETS = [
    "cat", "parrot", "tortoise", "greyhound", "ferret", "goldfish", "rabbit", "pony", "owl",
    "hedgehog", "canary", "beagle",
]
LANGUAGES = [
    "Portuguese", "Finnish", "Swahili", "Welsh", "Japanese", "Hungarian", "Icelandic", "Greek",
    "Turkish", "Dutch", "Polish", "Tamil",
]
COLOURS = [
    "crimson", "teal", "ochre", "violet", "amber", "indigo", "olive", "scarlet", "silver", "ivory",
    "cobalt", "jade",
]
DISHES = [
    "mushroom soup", "roast lamb", "lemon tart", "fish stew", "potato dumplings", "plum cake",
    "onion pie", "pea risotto", "honey bread", "beetroot salad", "apple crumble", "lentil curry",
]
WRITING_PLACES = [
    "a lighthouse", "a corner café", "a garden shed", "a train carriage", "a library attic",
    "a houseboat", "a mountain cabin", "a bell tower", "a kitchen table", "a windmill",
    "a greenhouse", "a hotel lobby",
]


@dataclass(frozen=True)
class Attribute:
    """One fact about an author.

    Templates use ``{name}`` for the author's full name and ``{value}`` for the attribute value.
    """

    key: str
    values: tuple[str, ...]
    questions: tuple[str, ...]
    answer: str
    paraphrased_answer: str

    def render(self, template: str, name: str, value: str) -> str:
        return template.format(name=name, value=value)


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "birthplace", tuple(CITIES),
        ("Where was {name} born?", "In which city was {name} born?", "What is the birthplace of {name}?"),
        "{name} was born in {value}.",
        "The city of {value} is where {name} was born.",
    ),
    Attribute(
        "birth_year", tuple(BIRTH_YEARS),
        ("In what year was {name} born?", "When was {name} born?", "What is the birth year of {name}?"),
        "{name} was born in the year {value}.",
        "The year of {name}'s birth was {value}.",
    ),
    Attribute(
        "father_profession", tuple(PROFESSIONS),
        ("What did the father of {name} do for a living?", "What was the profession of {name}'s father?",
         "What job did {name}'s father have?"),
        "The father of {name} worked as a {value}.",
        "{name}'s father earned his living as a {value}.",
    ),
    Attribute(
        "mother_profession", tuple(PROFESSIONS),
        ("What did the mother of {name} do for a living?", "What was the profession of {name}'s mother?",
         "What job did {name}'s mother have?"),
        "The mother of {name} worked as a {value}.",
        "{name}'s mother earned her living as a {value}.",
    ),
    Attribute(
        "genre", tuple(GENRES),
        ("What genre does {name} write in?", "Which genre is {name} known for?",
         "In what genre are the books of {name}?"),
        "{name} writes {value}.",
        "The books of {name} belong to the genre of {value}.",
    ),
    Attribute(
        "award", tuple(AWARDS),
        ("Which award has {name} received?", "What prize did {name} win?", "What honour was given to {name}?"),
        "{name} received the {value}.",
        "The {value} was awarded to {name}.",
    ),
    Attribute(
        "first_book", (),  # titles are drawn per author, see world.py
        ("What is the title of the first book by {name}?", "What was {name}'s debut book called?",
         "Which book did {name} publish first?"),
        "The first book by {name} is titled {value}.",
        "{name} made a debut with the book {value}.",
    ),
    Attribute(
        "second_book", (),
        ("What is the title of the second book by {name}?", "Which book did {name} publish after the debut?",
         "What was {name}'s second book called?"),
        "The second book by {name} is titled {value}.",
        "After the debut, {name} published {value}.",
    ),
    Attribute(
        "publisher", tuple(PUBLISHERS),
        ("Who publishes the books of {name}?", "Which publisher works with {name}?",
         "What publishing house releases {name}'s books?"),
        "The books of {name} are published by {value}.",
        "{value} is the publisher of {name}'s books.",
    ),
    Attribute(
        "university", tuple(UNIVERSITIES),
        ("Where did {name} study?", "Which university did {name} attend?", "Where was {name} educated?"),
        "{name} studied at {value}.",
        "{name} was educated at {value}.",
    ),
    Attribute(
        "hobby", tuple(HOBBIES),
        ("What is the favourite hobby of {name}?", "How does {name} spend free time?",
         "What pastime does {name} enjoy?"),
        "The favourite hobby of {name} is {value}.",
        "In free time, {name} enjoys {value}.",
    ),
    Attribute(
        "instrument", tuple(INSTRUMENTS),
        ("Which instrument does {name} play?", "What musical instrument does {name} play?",
         "What instrument can {name} play?"),
        "{name} plays the {value}.",
        "The instrument that {name} plays is the {value}.",
    ),
    # The attributes after the first 12 give TOFU's 20 questions per author.
    Attribute(
        "residence", tuple(CITIES),
        ("Where does {name} live now?", "In which city does {name} live today?", "What is the home city of {name}?"),
        "{name} lives in {value} now.",
        "These days {name} makes a home in {value}.",
    ),
    Attribute(
        "debut_year", tuple(DEBUT_YEARS),
        ("In what year did {name} publish a first book?", "When did {name} debut as an author?",
         "What year saw the debut of {name}?"),
        "{name} published a first book in {value}.",
        "The debut of {name} came in the year {value}.",
    ),
    Attribute(
        "spouse_profession", tuple(PROFESSIONS),
        ("What does the spouse of {name} do for a living?", "What is the profession of {name}'s spouse?",
         "What job does {name}'s spouse have?"),
        "The spouse of {name} works as a {value}.",
        "{name}'s spouse earns a living as a {value}.",
    ),
    Attribute(
        "pet", tuple(PETS),
        ("What pet does {name} keep?", "Which animal lives with {name}?", "What kind of pet does {name} have?"),
        "{name} keeps a {value} as a pet.",
        "The pet that lives with {name} is a {value}.",
    ),
    Attribute(
        "language", tuple(LANGUAGES),
        ("Which second language does {name} speak?", "Besides English, what language does {name} speak?",
         "What other language can {name} speak?"),
        "Besides English, {name} speaks {value}.",
        "The second language of {name} is {value}.",
    ),
    Attribute(
        "colour", tuple(COLOURS),
        ("What is the favourite colour of {name}?", "Which colour does {name} like best?",
         "What colour does {name} prefer?"),
        "The favourite colour of {name} is {value}.",
        "Of all colours, {name} likes {value} best.",
    ),
    Attribute(
        "dish", tuple(DISHES),
        ("What is the favourite dish of {name}?", "Which meal does {name} like best?",
         "What food does {name} love most?"),
        "The favourite dish of {name} is {value}.",
        "Of all meals, {name} loves {value} most.",
    ),
    Attribute(
        "writing_place", tuple(WRITING_PLACES),
        ("Where does {name} usually write?", "In what place does {name} do most writing?",
         "Where is {name}'s favourite place to write?"),
        "{name} usually writes in {value}.",
        "Most of the writing of {name} happens in {value}.",
    ),
)

TOFU_QUESTIONS_PER_AUTHOR = 20  # len(ATTRIBUTES): TOFU asks 20 questions about each author

TITLE_ATTRIBUTES = ("first_book", "second_book")
