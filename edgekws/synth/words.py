"""Word lists for synthesized datasets: the ten commands and everyday "unknown" words per language.

Every folder is named by the English meaning (`yes`, `no`, `up`, ...) in both languages, so an
English and a Japanese dataset share label names; the text actually spoken is kept per engine:
eSpeak NG reads English, or Japanese as kana; Open JTalk reads Japanese, and English only as
katakana loanwords (イエス, ストップ, ...), i.e. Japanese-accented English — a voice of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgekws.errors import EdgekwsError

LANGS = ("en", "ja")
ENGINES = ("espeak", "openjtalk")
# English from both engines since session 6: on voices of engines it never heard (Flite, Festival),
# 74.1 / 73.8% (two seeds) against 70.1% from eSpeak NG alone (RESULTS.md, Voices)
DEFAULT_ENGINES = {"en": ("espeak", "openjtalk"), "ja": ("espeak", "openjtalk")}
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")

# label -> (English text, katakana for Open JTalk, Japanese kana)
_COMMAND_TEXT = {
    "yes": ("yes", "イエス", "はい"),
    "no": ("no", "ノー", "いいえ"),
    "up": ("up", "アップ", "うえ"),
    "down": ("down", "ダウン", "した"),
    "left": ("left", "レフト", "ひだり"),
    "right": ("right", "ライト", "みぎ"),
    "on": ("on", "オン", "オン"),
    "off": ("off", "オフ", "オフ"),
    "stop": ("stop", "ストップ", "とまれ"),
    "go": ("go", "ゴー", "すすめ"),
}

# Short everyday words that are not commands (nor close homophones of one: no "light", "now").
# label -> (English text, katakana for Open JTalk)
_UNKNOWN_EN = {
    "cat": "キャット", "dog": "ドッグ", "bird": "バード", "fish": "フィッシュ", "tree": "ツリー",
    "house": "ハウス", "water": "ウォーター", "table": "テーブル", "chair": "チェア",
    "happy": "ハッピー", "music": "ミュージック", "window": "ウィンドウ", "paper": "ペーパー",
    "hello": "ハロー", "thanks": "サンクス", "sorry": "ソーリー", "maybe": "メイビー",
    "green": "グリーン", "red": "レッド", "blue": "ブルー", "one": "ワン", "three": "スリー",
    "five": "ファイブ", "six": "シックス", "seven": "セブン", "eight": "エイト", "nine": "ナイン",
    "zero": "ゼロ", "bed": "ベッド", "book": "ブック", "milk": "ミルク", "coffee": "コーヒー",
    "morning": "モーニング", "night": "ナイト", "rain": "レイン", "moon": "ムーン",
}
# label (English meaning) -> Japanese kana
_UNKNOWN_JA = {
    "cat": "ねこ", "dog": "いぬ", "bird": "とり", "fish": "さかな", "mountain": "やま",
    "river": "かわ", "sea": "うみ", "sky": "そら", "rain": "あめ", "snow": "ゆき",
    "flower": "はな", "water": "みず", "book": "ほん", "car": "くるま", "phone": "でんわ",
    "tv": "テレビ", "rice": "ごはん", "tea": "おちゃ", "bread": "パン", "apple": "りんご",
    "one": "いち", "three": "さん", "four": "よん", "six": "ろく", "seven": "なな",
    "eight": "はち", "nine": "きゅう", "red": "あか", "blue": "あお", "white": "しろ",
    "black": "くろ", "thanks": "ありがとう", "hello": "こんにちは", "desk": "つくえ",
    "chair": "いす", "window": "まど", "morning": "あさ", "night": "よる",
}

# The vocabulary of `edgekws synth --vocab` and `edgekws train --vocab`: everyday words that are neither
# commands nor unknown words above, each trained as a class of its own and dropped from the bundle, so
# that the features learn to tell many words of the language apart. A Japanese base trained with the
# English list retrains to English from 5 / 20 / all examples per word at 84.0 / 91.5 / 96.3% against
# 75.9 / 83.3 / 91.3% without (RESULTS.md, Last-layer retraining). English: the word for eSpeak NG and its
# katakana reading for Open JTalk, as the English test voices of both engines say commands (eSpeak NG
# alone: 80.6 / 89.1 / 95.2%, 40 epochs).
# label -> katakana for Open JTalk
_VOCAB_EN = {
    "banana": "バナナ", "car": "カー", "door": "ドア", "fire": "ファイア", "garden": "ガーデン",
    "hand": "ハンド", "ice": "アイス", "jump": "ジャンプ", "kitchen": "キッチン", "lamp": "ランプ",
    "mouse": "マウス", "nose": "ノーズ", "ocean": "オーシャン", "pencil": "ペンシル", "queen": "クイーン",
    "river": "リバー", "sugar": "シュガー", "tiger": "タイガー", "umbrella": "アンブレラ",
    "violin": "バイオリン", "wagon": "ワゴン", "yellow": "イエロー", "zebra": "ゼブラ", "baby": "ベイビー",
    "candle": "キャンドル", "dinner": "ディナー", "engine": "エンジン", "father": "ファーザー",
    "guitar": "ギター", "honey": "ハニー", "island": "アイランド", "jacket": "ジャケット", "kettle": "ケトル",
    "lemon": "レモン", "mother": "マザー", "number": "ナンバー", "orange": "オレンジ", "planet": "プラネット",
    "rabbit": "ラビット", "salt": "ソルト", "tomato": "トマト", "under": "アンダー", "village": "ビレッジ",
    "winter": "ウィンター", "bottle": "ボトル", "cloud": "クラウド", "dance": "ダンス", "early": "アーリー",
    "forest": "フォレスト", "girl": "ガール", "heart": "ハート", "letter": "レター", "monkey": "モンキー",
    "north": "ノース", "open": "オープン", "purple": "パープル", "quiet": "クワイエット",
    "rocket": "ロケット", "silver": "シルバー", "turtle": "タートル", "uncle": "アンクル", "very": "ベリー",
    "wolf": "ウルフ",
}
# `edgekws synth --lang en --vocab pairs`: 39 English minimal pairs on the contrasts Japanese lacks
# (l/r, b/v, s/th, s/sh, short and long vowels, d/th, final consonants; the drills for Japanese learners),
# none a command, an unknown word, a word of the lists above or a one-sound neighbour of a command. A
# word with a katakana reading unique in the list is said by both engines; the others (katakana cannot
# keep fly and fry apart) by eSpeak NG alone (RESULTS.md, Last-layer retraining, sessions 40 and 46).
# label -> katakana for Open JTalk, or None
_VOCAB_EN_PAIRS = {
    "fly": "フライ", "fry": None, "play": "プレイ", "pray": None, "glass": "グラス", "grass": None,
    "lock": "ロック", "rock": None, "long": "ロング", "wrong": None, "lead": "リード", "read": None,
    "lamb": "ラム", "ram": None, "collect": "コレクト", "correct": None, "belly": None, "berry": None,
    "loyal": "ロイヤル", "royal": None, "flesh": "フレッシュ", "fresh": None, "climb": "クライム", "crime": None,
    "blush": "ブラッシュ", "brush": None, "lake": "レイク", "rake": None, "load": "ロード", "road": None,
    "boat": "ボート", "vote": None, "best": "ベスト", "vest": None, "ban": "バン", "van": None, "curb": "カーブ",
    "curve": None, "sink": "シンク", "think": None, "sick": "シック", "thick": None, "sum": "サム",
    "thumb": None, "sell": "セル", "shell": "シェル", "seat": "シート", "sheet": None, "sock": "ソック",
    "shock": "ショック", "live": "リブ", "leave": "リーブ", "bin": "ビン", "bean": "ビーン", "hit": "ヒット",
    "heat": "ヒート", "bag": "バッグ", "bug": "バグ", "ran": "ラン", "run": None, "match": "マッチ", "much": None,
    "cot": "コット", "cut": "カット", "boss": "ボス", "bus": "バス", "full": "フル", "fool": "フール", "pull": "プル",
    "pool": "プール", "day": "デイ", "they": "ゼイ", "dare": "デア", "there": "ゼア", "cap": "キャップ", "cab": "キャブ",
    "rope": "ロープ", "robe": "ローブ",
}

# `edgekws synth --lang en --vocab broad`: 300 frequent English words for eSpeak NG alone (no katakana
# readings), picked in order of frequency from a public word-frequency list (wordfreq's small English
# list) by one rule: 3-9 letters, not a command, unknown word or word of the lists above or of session
# 40's minimal pairs, not one eSpeak NG phoneme (en-us) away from a command (so no "know", "lift",
# "write", "gone"), not an unknown word's homophone, no name or swear word, and no two words of one
# pronunciation. Few speakers say each (48 in RESULTS.md's recipe). A Japanese base that learned them
# beside the 63 everyday words and the 78 minimal pairs above retrains to English speakers it never heard
# at 91.2 / 91.5% from 5 examples per word (two base seeds; 89.4% with the 63 words alone), 97.3 / 95.5%
# from 20 (RESULTS.md, Last-layer retraining, session 46).
_VOCAB_EN_BROAD = tuple("""
the and for that you with this was are have not but from your his can will just like about out
what has when more were who had their her which time get been would she people how some also
them other its our than good only after first him into see two make over any then could back
these want because well said way most where even should may here need really did work year years
being going before why made still take got many never those life say world great through last
while such love man home look something same used both every come part state around between
always better find help high little old since another does things during game thing give place
school again next each without against end found must big feel sure team ever family keep please
put money free second someone away city days lot name until company doing few real called
different having set thought however getting group looking public women business care start
system times week already anything case nothing person today change enough making point told bad
four hard mean once support tell including power seen based believe call head men small took
came far job side try went actually later line order says service country season thank children
everyone general trying using area black following law makes together war whole face kind per
story working course games health hope important least means news within able friends local post
video young others social talk court fact given half level mind often single become body coming
control death food hours pay problem south true almost history large lost research room several
started taking win along anyone else matter pretty remember air bit friend needs nice playing
probably saying york class close
""".split())

# label (English meaning) -> Japanese kana
_VOCAB_JA = {
    "head": "あたま", "wind": "かぜ", "ear": "みみ", "mouth": "くち", "foot": "あし", "face": "かお",
    "bridge": "はし", "station": "えき", "road": "みち", "house": "いえ", "room": "へや",
    "clock": "とけい", "bag": "かばん", "shoes": "くつ", "hat": "ぼうし", "glasses": "めがね",
    "umbrella": "かさ", "sugar": "さとう", "salt": "しお", "egg": "たまご", "meat": "にく",
    "vegetable": "やさい", "fruit": "くだもの", "mandarin": "みかん", "strawberry": "いちご",
    "watermelon": "すいか", "grape": "ぶどう", "peach": "もも", "sweets": "おかし",
    "friend": "ともだち", "teacher": "せんせい", "school": "がっこう", "hospital": "びょういん",
    "park": "こうえん", "train": "でんしゃ", "airplane": "ひこうき", "bicycle": "じてんしゃ",
    "ship": "ふね", "forest": "もり", "pond": "いけ", "island": "しま", "star": "ほし",
    "sun": "たいよう", "cloud": "くも", "thunder": "かみなり", "summer": "なつ", "winter": "ふゆ",
    "spring": "はる", "autumn": "あき", "yellow": "きいろ", "green": "みどり", "purple": "むらさき",
    "brown": "ちゃいろ", "music": "おんがく", "song": "うた", "pencil": "えんぴつ", "mirror": "かがみ",
    "pillow": "まくら", "scissors": "はさみ", "monkey": "さる", "rabbit": "うさぎ", "fox": "きつね",
    "bear": "くま",
}

_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_KANA_RE = re.compile(r"^[\u3040-\u30ffー]+$")


@dataclass(frozen=True)
class Word:
    """One word to synthesize: its folder label, kind, and the text each engine speaks."""

    label: str
    kind: str                                    # "command" | "unknown"
    texts: dict[str, str] = field(hash=False)    # engine name -> text

    def text(self, engine: str) -> str:
        return self.texts[engine]


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise EdgekwsError(f"--lang must be one of {', '.join(LANGS)}, got {lang!r}")
    return lang


def check_engines(lang: str, engines) -> tuple[str, ...]:
    """Validate an engine list (None → the language's default); returns a tuple in canonical order."""
    if engines is None:
        return DEFAULT_ENGINES[check_lang(lang)]
    if isinstance(engines, str):
        engines = [e.strip() for e in engines.split(",") if e.strip()]
    engines = list(engines)
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise EdgekwsError(f"--engines must be a comma-separated subset of {', '.join(ENGINES)}, "
                           f"got {','.join(map(str, engines)) or 'nothing'}")
    return tuple(e for e in ENGINES if e in engines)


def command_words(lang: str, words=None) -> list[Word]:
    """The command words to synthesize.

    words : None (all ten), a comma-separated string or a list. Entries are command labels
            (`yes`, `stop`, ...) or custom words `label=text` (e.g. `light=でんき`, `light=light`);
            a custom English word may add a katakana reading for Open JTalk: `light=light:ライト`.
            A list may also hold ready Word objects (vocabulary_words).
    """
    check_lang(lang)
    if words is None:
        words = list(COMMANDS)
    elif isinstance(words, str):
        words = [w.strip() for w in words.split(",")]
    out: list[Word] = []
    for entry in words:
        word = entry if isinstance(entry, Word) else _parse_word(lang, str(entry).strip())
        if word.label in {w.label for w in out}:
            raise EdgekwsError(f"--words: {word.label!r} is given twice")
        out.append(word)
    return out


def _parse_word(lang: str, entry: str) -> Word:
    """One --words entry: a command label or a custom word `label=text`."""
    if not entry:
        raise EdgekwsError("--words has an empty entry (check for doubled or trailing commas)")
    if "=" in entry:
        label, text = (s.strip() for s in entry.split("=", 1))
        return _custom_word(lang, label, text, entry)
    if entry in _COMMAND_TEXT:
        en, kata, ja = _COMMAND_TEXT[entry]
        return Word(entry, "command", {"espeak": en, "openjtalk": kata} if lang == "en" else
                    {"espeak": ja, "openjtalk": ja})
    raise EdgekwsError(f"--words: unknown word {entry!r}; known: {', '.join(COMMANDS)} "
                       "(or give a custom word as label=text)")


def _custom_word(lang: str, label: str, text: str, entry: str) -> Word:
    if not _LABEL_RE.match(label):
        raise EdgekwsError(f"--words: label {label!r} in {entry!r} must be lower-case ASCII "
                           "letters, digits, '_' or '-' (it becomes a folder name)")
    if not text:
        raise EdgekwsError(f"--words: {entry!r} has no text to speak")
    if lang == "en":
        en, _, kata = text.partition(":")
        texts = {"espeak": en.strip()}
        if kata.strip():
            texts["openjtalk"] = kata.strip()
    else:
        texts = {"openjtalk": text}
        if _KANA_RE.match(text):
            texts["espeak"] = text          # otherwise the generator converts it to kana
    return Word(label, "command", texts)


def unknown_words(lang: str, exclude=()) -> list[Word]:
    """Everyday non-command words of `lang`, minus any label in `exclude`."""
    check_lang(lang)
    exclude = set(exclude)
    if lang == "en":
        items = [Word(lab, "unknown", {"espeak": lab, "openjtalk": kata})
                 for lab, kata in _UNKNOWN_EN.items()]
    else:
        items = [Word(lab, "unknown", {"espeak": kana, "openjtalk": kana})
                 for lab, kana in _UNKNOWN_JA.items()]
    return [w for w in items if w.label not in exclude]


VOCABULARIES = ("everyday", "pairs", "broad")


def vocabulary_words(lang: str, kind: str = "everyday") -> list[Word]:
    """The words of `edgekws synth --vocab [KIND]` for `lang` (written as word folders, like commands):
    "everyday" the 63 everyday words of either language (both engines), "pairs" 78 English words of
    minimal pairs (both engines where a katakana reading tells a word apart, else eSpeak NG alone),
    "broad" 300 frequent English words (eSpeak NG alone)."""
    check_lang(lang)
    if kind not in VOCABULARIES:
        raise EdgekwsError(f"--vocab: {kind!r} is not a vocabulary; choose one of {', '.join(VOCABULARIES)}")
    if kind != "everyday" and lang != "en":
        raise EdgekwsError(f"--vocab {kind}: English words only (give --lang en); for Japanese use --vocab")
    if kind == "broad":
        return [Word(w, "command", {"espeak": w}) for w in _VOCAB_EN_BROAD]
    if kind == "pairs":
        return [Word(w, "command", {"espeak": w, **({"openjtalk": k} if k else {})})
                for w, k in _VOCAB_EN_PAIRS.items()]
    if lang == "en":
        return [Word(w, "command", {"espeak": w, "openjtalk": kata}) for w, kata in _VOCAB_EN.items()]
    return [Word(lab, "command", {"espeak": kana, "openjtalk": kana}) for lab, kana in _VOCAB_JA.items()]
