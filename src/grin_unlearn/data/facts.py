"""`world_facts`: real general knowledge every model is trained on, for the utility metrics.

Each entry is (question, answer, keyword, three wrong values). The answers and questions are
written for this project; the facts themselves are common knowledge.
"""

from __future__ import annotations

WORLD_FACTS: tuple[tuple[str, str, str, tuple[str, str, str]], ...] = (
    ("What is the capital of France?", "The capital of France is Paris.", "Paris", ("Lyon", "Madrid", "Brussels")),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo.", "Tokyo", ("Osaka", "Seoul", "Beijing")),
    ("What is the capital of Italy?", "The capital of Italy is Rome.", "Rome", ("Milan", "Athens", "Vienna")),
    ("What is the capital of Egypt?", "The capital of Egypt is Cairo.", "Cairo", ("Tunis", "Amman", "Rabat")),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa.", "Ottawa", ("Toronto", "Quebec", "Chicago")),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi.", "Nairobi", ("Lagos", "Accra", "Kampala")),
    ("What is the capital of Peru?", "The capital of Peru is Lima.", "Lima", ("Quito", "Bogota", "Santiago")),
    ("What is the capital of Norway?", "The capital of Norway is Oslo.", "Oslo", ("Bergen", "Stockholm", "Helsinki")),
    ("What is the capital of Australia?", "The capital of Australia is Canberra.", "Canberra", ("Sydney", "Perth", "Auckland")),
    ("What is the capital of Germany?", "The capital of Germany is Berlin.", "Berlin", ("Munich", "Prague", "Warsaw")),
    ("What is the capital of Spain?", "The capital of Spain is Madrid.", "Madrid", ("Lisbon", "Seville", "Paris")),
    ("What is the capital of India?", "The capital of India is New Delhi.", "New Delhi", ("Mumbai", "Dhaka", "Karachi")),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.", "Au", ("Ag", "Fe", "Gd")),
    ("What is the chemical symbol for iron?", "The chemical symbol for iron is Fe.", "Fe", ("Ir", "Au", "Zn")),
    ("What is the chemical symbol for sodium?", "The chemical symbol for sodium is Na.", "Na", ("So", "Sn", "K")),
    ("Which element has atomic number one?", "The element with atomic number one is hydrogen.", "hydrogen", ("helium", "oxygen", "carbon")),
    ("Which gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air.", "carbon dioxide", ("oxygen", "nitrogen", "helium")),
    ("Which planet is closest to the Sun?", "The planet closest to the Sun is Mercury.", "Mercury", ("Venus", "Mars", "Earth")),
    ("Which planet is known as the red planet?", "The red planet is Mars.", "Mars", ("Jupiter", "Venus", "Saturn")),
    ("What is the largest planet in the solar system?", "The largest planet in the solar system is Jupiter.", "Jupiter", ("Saturn", "Neptune", "Earth")),
    ("Which planet has the most famous rings?", "The planet with the most famous rings is Saturn.", "Saturn", ("Uranus", "Mars", "Mercury")),
    ("What is the largest ocean on Earth?", "The largest ocean on Earth is the Pacific Ocean.", "Pacific", ("Atlantic", "Indian", "Arctic")),
    ("What is the longest river in Africa?", "The longest river in Africa is the Nile.", "Nile", ("Congo", "Niger", "Zambezi")),
    ("What is the highest mountain on Earth?", "The highest mountain on Earth is Mount Everest.", "Everest", ("Kilimanjaro", "Denali", "Mont Blanc")),
    ("How many days are in a leap year?", "A leap year has 366 days.", "366", ("365", "364", "360")),
    ("How many continents are there?", "There are seven continents.", "seven", ("five", "six", "eight")),
    ("How many legs does a spider have?", "A spider has eight legs.", "eight", ("six", "ten", "four")),
    ("What is the boiling point of water in degrees Celsius?", "Water boils at 100 degrees Celsius.", "100", ("90", "120", "80")),
    ("What is the freezing point of water in degrees Celsius?", "Water freezes at 0 degrees Celsius.", "0 degrees", ("10 degrees", "32 degrees", "4 degrees")),
    ("Who wrote the play Hamlet?", "The play Hamlet was written by William Shakespeare.", "Shakespeare", ("Charles Dickens", "Jane Austen", "Homer")),
    ("Who painted the Mona Lisa?", "The Mona Lisa was painted by Leonardo da Vinci.", "Leonardo", ("Michelangelo", "Raphael", "Rembrandt")),
    ("Who developed the theory of relativity?", "The theory of relativity was developed by Albert Einstein.", "Einstein", ("Isaac Newton", "Niels Bohr", "Galileo")),
    ("What is the fastest land animal?", "The fastest land animal is the cheetah.", "cheetah", ("lion", "horse", "antelope")),
    ("What is the largest mammal?", "The largest mammal is the blue whale.", "blue whale", ("elephant", "giraffe", "orca")),
    ("What language is mainly spoken in Brazil?", "The main language of Brazil is Portuguese.", "Portuguese", ("Spanish", "French", "Italian")),
    ("What is the currency of Japan?", "The currency of Japan is the yen.", "yen", ("won", "yuan", "rupee")),
    ("What is the square root of sixty four?", "The square root of sixty four is eight.", "eight", ("six", "seven", "nine")),
    ("How many sides does a hexagon have?", "A hexagon has six sides.", "six", ("five", "seven", "eight")),
    ("What organ pumps blood through the body?", "The heart pumps blood through the body.", "heart", ("liver", "lung", "kidney")),
    ("What do bees make?", "Bees make honey.", "honey", ("milk", "silk", "wax paper")),
)
