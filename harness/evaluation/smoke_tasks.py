"""The embedded smoke set: four tiny mteb tasks (retrieval, STS, classification, bitext).

These are real mteb task classes (their evaluators and metrics are mteb's), with metadata that
says plainly they are a smoke set. They let ``harness run --example smoke`` run every local task
type offline in about a minute on a laptop CPU; their scores mean nothing about model quality.
The texts live here and ``python -m harness.evaluation.smoke_tasks --write`` writes the data files shipped in
``harness/smoke_data/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.abstasks.text.bitext_mining import AbsTaskBitextMining

from atomicio import atomic_write_text

SMOKE_DATA = Path(__file__).parents[1] / "smoke_data"

# (topic id, {lang: (query, document)}): one relevant document per query, every document a
# distractor for the other queries.
RETRIEVAL: list[tuple[str, dict[str, tuple[str, str]]]] = [
    ("bread", {
        "en": ("How long should bread dough rise?", "Bread dough usually rises for one to two hours at room temperature until it doubles in size."),
        "de": ("Wie lange muss Brotteig gehen?", "Brotteig geht meist ein bis zwei Stunden bei Zimmertemperatur, bis er sich verdoppelt hat."),
        "fr": ("Combien de temps la pâte à pain doit-elle lever ?", "La pâte à pain lève généralement une à deux heures à température ambiante jusqu'à doubler de volume."),
    }),
    ("tides", {
        "en": ("What causes ocean tides?", "Tides are caused mainly by the gravitational pull of the Moon and, to a lesser degree, the Sun."),
        "de": ("Was verursacht die Gezeiten?", "Die Gezeiten entstehen vor allem durch die Anziehungskraft des Mondes und in geringerem Maße der Sonne."),
        "fr": ("Qu'est-ce qui provoque les marées ?", "Les marées sont causées surtout par l'attraction gravitationnelle de la Lune et, dans une moindre mesure, du Soleil."),
    }),
    ("bicycle", {
        "en": ("How do I fix a flat bicycle tire?", "To repair a puncture, remove the inner tube, find the hole, glue a patch over it and reinflate the tire."),
        "de": ("Wie repariere ich einen platten Fahrradreifen?", "Um einen Platten zu flicken, nimmt man den Schlauch heraus, sucht das Loch, klebt einen Flicken darauf und pumpt den Reifen auf."),
        "fr": ("Comment réparer un pneu de vélo crevé ?", "Pour réparer une crevaison, retirez la chambre à air, trouvez le trou, collez une rustine et regonflez le pneu."),
    }),
    ("python", {
        "en": ("How do I read a file line by line in Python?", "In Python, open the file with a with-statement and iterate over the file object to get one line at a time."),
        "de": ("Wie lese ich in Python eine Datei Zeile für Zeile?", "In Python öffnet man die Datei mit einer with-Anweisung und iteriert über das Dateiobjekt, um jeweils eine Zeile zu erhalten."),
        "fr": ("Comment lire un fichier ligne par ligne en Python ?", "En Python, ouvrez le fichier avec une instruction with et parcourez l'objet fichier pour obtenir une ligne à la fois."),
    }),
    ("sleep", {
        "en": ("How many hours of sleep do adults need?", "Most adults need between seven and nine hours of sleep per night to stay healthy."),
        "de": ("Wie viele Stunden Schlaf brauchen Erwachsene?", "Die meisten Erwachsenen brauchen sieben bis neun Stunden Schlaf pro Nacht, um gesund zu bleiben."),
        "fr": ("Combien d'heures de sommeil faut-il aux adultes ?", "La plupart des adultes ont besoin de sept à neuf heures de sommeil par nuit pour rester en bonne santé."),
    }),
    ("volcano", {
        "en": ("Why do volcanoes erupt?", "Volcanoes erupt when pressure from molten rock and gases beneath the crust forces magma to the surface."),
        "de": ("Warum brechen Vulkane aus?", "Vulkane brechen aus, wenn der Druck von geschmolzenem Gestein und Gasen unter der Kruste Magma an die Oberfläche treibt."),
        "fr": ("Pourquoi les volcans entrent-ils en éruption ?", "Les volcans entrent en éruption lorsque la pression de la roche fondue et des gaz sous la croûte pousse le magma vers la surface."),
    }),
    ("tea", {
        "en": ("At what temperature should green tea be brewed?", "Green tea tastes best brewed with water at about 70 to 80 degrees Celsius, not boiling."),
        "de": ("Bei welcher Temperatur sollte man grünen Tee aufbrühen?", "Grüner Tee schmeckt am besten mit Wasser von etwa 70 bis 80 Grad Celsius, nicht kochend."),
        "fr": ("À quelle température faut-il infuser le thé vert ?", "Le thé vert est meilleur infusé avec une eau à environ 70 à 80 degrés Celsius, pas bouillante."),
    }),
    ("password", {
        "en": ("What makes a password strong?", "A strong password is long, unique for each account and hard to guess, ideally a random passphrase."),
        "de": ("Was macht ein Passwort sicher?", "Ein sicheres Passwort ist lang, für jedes Konto einzigartig und schwer zu erraten, idealerweise eine zufällige Passphrase."),
        "fr": ("Qu'est-ce qui rend un mot de passe robuste ?", "Un mot de passe robuste est long, unique pour chaque compte et difficile à deviner, idéalement une phrase de passe aléatoire."),
    }),
]

# (sentence1, sentence2, score 0-5) per language
STS: dict[str, list[tuple[str, str, float]]] = {
    "en": [
        ("A man is playing a guitar.", "A man plays the guitar.", 5.0),
        ("A woman is slicing an onion.", "A woman is cutting an onion.", 4.6),
        ("The cat sleeps on the sofa.", "A cat is napping on the couch.", 4.4),
        ("Two children are running in a park.", "Kids are playing outside.", 3.2),
        ("A dog is barking at the mailman.", "A dog chases a ball on the beach.", 1.8),
        ("The stock market fell sharply today.", "A chef is preparing pasta.", 0.0),
        ("A plane is taking off.", "An airplane departs from the runway.", 4.8),
        ("She is reading a book.", "He is writing a letter.", 1.2),
        ("The train arrived late.", "The train was delayed.", 4.2),
        ("A boy is swimming in a lake.", "The weather is sunny.", 0.4),
    ],
    "de": [
        ("Ein Mann spielt Gitarre.", "Ein Mann spielt auf der Gitarre.", 5.0),
        ("Eine Frau schneidet eine Zwiebel.", "Eine Frau hackt eine Zwiebel.", 4.6),
        ("Die Katze schläft auf dem Sofa.", "Eine Katze döst auf der Couch.", 4.4),
        ("Zwei Kinder rennen im Park.", "Kinder spielen draußen.", 3.2),
        ("Ein Hund bellt den Briefträger an.", "Ein Hund jagt einen Ball am Strand.", 1.8),
        ("Der Aktienmarkt ist heute stark gefallen.", "Ein Koch bereitet Nudeln zu.", 0.0),
        ("Ein Flugzeug hebt ab.", "Ein Flugzeug startet von der Landebahn.", 4.8),
        ("Sie liest ein Buch.", "Er schreibt einen Brief.", 1.2),
        ("Der Zug kam zu spät an.", "Der Zug hatte Verspätung.", 4.2),
        ("Ein Junge schwimmt in einem See.", "Das Wetter ist sonnig.", 0.4),
    ],
}

CLASSES = ["card_lost", "transfer_failed", "change_address"]
CLASSIFICATION: dict[str, list[tuple[str, int]]] = {
    "train": [
        ("I lost my card yesterday.", 0), ("My card was stolen, please block it.", 0),
        ("I can't find my debit card anywhere.", 0), ("Someone took my wallet with my card.", 0),
        ("Help, my credit card is missing.", 0), ("Please freeze my lost card.", 0),
        ("My transfer did not go through.", 1), ("The payment to my landlord failed.", 1),
        ("Why was my bank transfer rejected?", 1), ("The money never arrived at the other account.", 1),
        ("My wire transfer bounced back.", 1), ("Transfer declined with an error.", 1),
        ("I moved and need to update my address.", 2), ("How do I change my home address?", 2),
        ("Please update the address on my account.", 2), ("I have a new postal address.", 2),
        ("Where can I edit my address details?", 2), ("My address changed last month.", 2),
    ],
    "test": [
        ("I think I left my card at the restaurant.", 0), ("My card is gone, what should I do?", 0),
        ("The transfer to my friend failed twice.", 1), ("Why did my payment fail?", 1),
        ("I need to change the address you have on file.", 2), ("Can I update my street address online?", 2),
    ],
}

BITEXT: dict[str, list[tuple[str, str]]] = {
    "deu-eng": [
        ("Ich trinke gern Kaffee am Morgen.", "I like to drink coffee in the morning."),
        ("Der Hund schläft im Garten.", "The dog is sleeping in the garden."),
        ("Wir fahren morgen nach Berlin.", "We are going to Berlin tomorrow."),
        ("Das Buch liegt auf dem Tisch.", "The book is on the table."),
        ("Es regnet seit heute Morgen.", "It has been raining since this morning."),
        ("Meine Schwester spielt Klavier.", "My sister plays the piano."),
        ("Kannst du mir bitte helfen?", "Can you help me, please?"),
        ("Der Zug fährt um acht Uhr ab.", "The train leaves at eight o'clock."),
    ],
    "fra-eng": [
        ("J'aime boire du café le matin.", "I like to drink coffee in the morning."),
        ("Le chien dort dans le jardin.", "The dog is sleeping in the garden."),
        ("Nous allons à Paris demain.", "We are going to Paris tomorrow."),
        ("Le livre est sur la table.", "The book is on the table."),
        ("Il pleut depuis ce matin.", "It has been raining since this morning."),
        ("Ma sœur joue du piano.", "My sister plays the piano."),
        ("Peux-tu m'aider, s'il te plaît ?", "Can you help me, please?"),
        ("Le train part à huit heures.", "The train leaves at eight o'clock."),
    ],
}

_COMMON: dict[str, Any] = dict(
    reference="https://example.invalid/harness-smoke-set",
    category="t2t",
    modalities=["text"],
    date=("2026-11-01", "2026-11-25"),
    domains=["Written"],
    task_subtypes=[],
    license="apache-2.0",
    annotations_creators="expert-annotated",
    dialect=[],
    sample_creation="created",
    bibtex_citation="",
)


def _meta(name: str, description: str, type_: str, eval_langs: Any, main_score: str, prompt: Any = None) -> TaskMetadata:
    return TaskMetadata(
        name=name,
        dataset={"path": "harness/smoke", "revision": "1"},
        description=f"SMOKE SET (not a benchmark): {description}",
        type=type_,
        eval_splits=["test"],
        eval_langs=eval_langs,
        main_score=main_score,
        prompt=prompt,
        **_COMMON,
    )


class HarnessSmokeRetrieval(AbsTaskRetrieval):
    metadata = _meta("HarnessSmokeRetrieval", "8 queries and 8 documents per language.", "Retrieval",
                     {"en": ["eng-Latn"], "de": ["deu-Latn"], "fr": ["fra-Latn"]}, "ndcg_at_10",
                     {"query": "Given a question, retrieve the passage that answers it"})


class HarnessSmokeSTS(AbsTaskSTS):
    metadata = _meta("HarnessSmokeSTS", "10 sentence pairs per language.", "STS",
                     {"en": ["eng-Latn"], "de": ["deu-Latn"]}, "cosine_spearman")
    min_score = 0
    max_score = 5


class HarnessSmokeClassification(AbsTaskClassification):
    metadata = _meta("HarnessSmokeClassification", "3 banking intents, 18 train and 6 test texts.", "Classification",
                     ["eng-Latn"], "accuracy")
    samples_per_label = 6
    n_experiments = 3


class HarnessSmokeBitextMining(AbsTaskBitextMining):
    metadata = _meta("HarnessSmokeBitextMining", "8 aligned pairs per language pair.", "BitextMining",
                     {"deu-eng": ["deu-Latn", "eng-Latn"], "fra-eng": ["fra-Latn", "eng-Latn"]}, "f1")


SMOKE_TASKS: dict[str, type] = {
    cls.metadata.name: cls
    for cls in (HarnessSmokeRetrieval, HarnessSmokeSTS, HarnessSmokeClassification, HarnessSmokeBitextMining)
}


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_smoke_data(root: Path = SMOKE_DATA) -> None:
    """Write the files shipped in ``smoke_data/`` from the texts above (layouts of local_data)."""
    for lang in ("en", "de", "fr"):
        base = root / "retrieval" / lang
        _jsonl(base / "corpus.jsonl", [{"_id": f"{lang}-d-{t}", "title": "", "text": by[lang][1]} for t, by in RETRIEVAL])
        _jsonl(base / "queries.jsonl", [{"_id": f"{lang}-q-{t}", "text": by[lang][0]} for t, by in RETRIEVAL])
        atomic_write_text(base / "qrels" / "test.tsv",
                          "query-id\tcorpus-id\tscore\n" + "".join(f"{lang}-q-{t}\t{lang}-d-{t}\t1\n" for t, _ in RETRIEVAL))
    for lang, rows in STS.items():
        _jsonl(root / "sts" / lang / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in rows])
    for split, rows in CLASSIFICATION.items():
        _jsonl(root / "classification" / f"{split}.jsonl", [{"text": t, "label": y, "label_text": CLASSES[y]} for t, y in rows])
    for pair, rows in BITEXT.items():
        src_lang, tgt_lang = pair.split("-")
        _jsonl(root / "bitext" / f"{pair}.jsonl", [{"src": s, "tgt": t, "src_lang": src_lang, "tgt_lang": tgt_lang} for s, t in rows])


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_smoke_data()
        print(f"wrote {SMOKE_DATA}")
