"""Build small GPT-NeoX-shaped tokenizer.json files with HF `tokenizers`, and the ids it produces.

The real GPT-NeoX tokenizer (50k tokens, 2 MB) cannot be committed or downloaded here, so we
train a byte-level BPE of ~1.2k tokens on a varied built-in corpus and give its file exactly
GPT-NeoX's shape (see the header of EleutherAI/gpt-neox-20b's tokenizer.json):

    added_tokens   <|endoftext|> (id 0), <|padding|> (id 1): special, normalized false;
                   runs of spaces "  " ... : not special, normalized true
    normalizer     {"type": "NFC"}
    pre_tokenizer  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true}
    post_processor and decoder: ByteLevel;  model: BPE, merges as "a b" strings

Variants: merges as ["a", "b"] pairs (what tokenizers >= 0.20 writes); add_prefix_space true;
extra added tokens exercising the lstrip / rstrip / single_word / normalized flags.
HF `tokenizers` then encodes a broad corpus and decodes ids (including ones that split
multi-byte characters) with each file; tests/test_tokenizer.py checks ours against that
without importing `tokenizers`.

Run: python3 tests/make_tokenizer_fixtures.py   (deterministic; needs `tokenizers`)
"""

import json
import pathlib
import random
import unicodedata

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

OUT = pathlib.Path(__file__).resolve().parent / "fixtures" / "tokenizer"
VOCAB_SIZE = 1200
SPACE_RUNS = ["  ", "   ", "    ", "        "]  # GPT-NeoX adds runs of 2 to 24 spaces
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog. It's a sunny day, isn't it? We'll see.",
    "In the beginning the Universe was created. This has made a lot of people very angry "
    "and been widely regarded as a bad move.",
    "Mamba is a selective state space model: its recurrence keeps a fixed-size state, so "
    "generating each new token costs the same time and memory however long the text is.",
    "They're here; you've seen them; I'm sure he'd agree, and she'll say so. THEY'RE LOUD.",
    "def step(token, state):\n    x = embed[token]\n    for layer in layers:\n        x = layer(x, state)\n"
    "    return logits(x)\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\nreturn sum;\n",
    "<html><body><p class=\"note\">Hello, world!</p></body></html>",
    "SELECT name, count(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC;",
    "Numbers: 0 1 2 3 42 1999 2024 3.14159 1e-5 0x1F 100,000 50%",
    "Le cœur a ses raisons que la raison ne connaît point. Ça va très bien, merci.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein. Straße, Mädchen, schön.",
    "¿Dónde está la biblioteca? El niño comió una piña en España.",
    "Москва — столица России. Привет, как дела? Всё хорошо.",
    "Η γλώσσα μου έδωσαν ελληνική. Καλημέρα κόσμε.",
    "日本語のテキストです。東京は日本の首都です。こんにちは世界。",
    "中文文本：北京是中国的首都。你好，世界！我们学习机器学习。",
    "한국어 텍스트입니다. 안녕하세요 세계.",
    "مرحبا بالعالم. اللغة العربية جميلة. ٠١٢٣٤٥٦٧٨٩",
    "नमस्ते दुनिया। हिन्दी भाषा सुंदर है। ०१२३",
    "สวัสดีชาวโลก ภาษาไทยสวยงาม",
    "שלום עולם. עברית היא שפה יפה.",
    "Emoji: 😀 😂 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵 ✨",
    "Math: ∑ x² + √y ≤ ∞, α β γ δ ε, ½ ¾ Ⅻ ⅷ",
    "    indented with spaces\n\t\tindented with tabs\n\n\nblank lines   trailing   ",
]

CORPUS = [
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning the Universe was created.",
    "It's, it't, they're, we've, I'm, you'll, he'd.",
    "IT'S, IT'T, THEY'RE, WE'VE, I'M, YOU'LL, HE'D.",
    "'s 't 're 've 'm 'll 'd ''s ' s 'S 'RE",
    "don't won't can't shouldn't y'all rock'n'roll",
    "def f(x):\n    return x * 2\n",
    "if (a && b) { return c[0]; } // comment",
    "    four spaces\n        eight spaces\n",
    "a  b   c    d     e      f       g        h         i",
    "trailing spaces   ",
    "   leading spaces",
    "                        24 spaces",
    " ",
    "  ",
    "\t",
    "\t\ttabs\tand\t \tspaces \t",
    "\n",
    "\n\n\n",
    "line one\nline two\r\nline three\rend",
    " \n \n\t\n ",
    "0123456789",
    "3.14159 2.71828 1e10 -42 +7 1,000,000",
    "12345678901234567890",
    "abc123def456",
    "日本語のテキスト",
    "東京は日本の首都です。",
    "你好，世界！",
    "안녕하세요",
    "😀",
    "👍🏽👍🏿",
    "👩‍💻 and 👨‍👩‍👧‍👦",
    "🏳️‍🌈 ❤️ 🇯🇵🇺🇸",
    "e\u0301",
    "\u00e9",
    "cafe\u0301 vs caf\u00e9",
    "A\u030a \u212b \u00c5",
    "\u1e9b\u0323",
    "q\u0307\u0323",
    "\u0915\u093c",
    "한\u1100\u1161",
    "\u1100\u1161\u11a8",
    "\x00\x01\x02\x03\x04\x05\x06\x07\x08",
    "\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b",
    "a\x1cb\x1dc\x1ed\x1fe",
    " \x1c \x1d \x1e \x1f ",
    "\x7f\x80\x85\x9f",
    "a\x85b \x85 c",
    "non\xa0breaking\xa0 space",
    "line\u2028separator\u2029paragraph",
    "ideographic\u3000space\u3000\u3000",
    "\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom",
    "\u180e mongolian vowel separator",
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "<|endoftext|><|endoftext|>",
    " <|endoftext|> ",
    "<|padding|>pad<|endoftext|>",
    "<|endoftext",
    "<|endoftext|",
    "spaces  <|endoftext|>  around",
    "a <|mask|> b",
    "x  <|mask|>  y<|mask|>z <|mask|>",
    "[WORD] a[WORD] [WORD]b ([WORD]) é[WORD] [WORD]",
    "été e\u0301te\u0301 ÉTÉ étét",
    "A\u030a \u00c5 A\u030a\u030a",
    "مرحبا بالعالم",
    "اللغة العربية ٠١٢٣٤٥٦٧٨٩",
    "नमस्ते दुनिया ०१२३",
    "สวัสดีชาวโลก",
    "שלום עולם",
    "Ⅻ ⅷ ² ³ ¹ ¼ ½ ٣ ۳ ߃ ௰ 〇 ㊀ 🄁",
    "x² + y³ = z⁴",
    "ǅ ǈ ǋ ǲ ᾈ ᾼ",
    "ʰ ʲ ˀ ˢ ꜝ ꟸ ᵃ ᵇ 〱 ゝ ー",
    "ǅungla Ǆ ǆ",
    "Ωmega ℌ ℍ ℕ ℙ",
    "ﬁ ﬂ ﬀ Ⅸ ㈱ ㌔",
    "Fullwidth: ＡＢＣ１２３",
    "mixed: abc日本def123한국",
    "!!!???...,,,;;;:::",
    "@#$%^&*()_+-=[]{}|\\/<>~`",
    "'quoted' \"double\" `back`",
    "email@example.com https://example.com/path?q=1&r=2#frag",
    "__init__ self.x_1 CamelCase snake_case kebab-case",
    "\U0001F600\U0001F601\U0001F602",
    "\U00020000\U0002A6D6",
    "\U00031350\U000323AF",
    "\U0001E4D0\U0001E5D0\U00010EC2",
    "\U000E0001\U000E0020\U000E007F",
    "\U0010FFFF\U000F0000",
    "\ue000\uf8ff private use",
    "\ufff9\ufffa\ufffb\ufffc\ufffd",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "Москва — столица России.",
    "Η γλώσσα μου έδωσαν ελληνική.",
    "a" * 300,
    "ab" * 200,
    "日本" * 150,
    "🙂" * 50,
    " " * 100,
    "\n" * 40,
    "-" * 80,
]


def build_base() -> Tokenizer:
    """Train the byte-level BPE with GPT-NeoX's pipeline and special tokens first (ids 0, 1)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXT * 4 + CORPUS, trainer)
    tokenizer.add_tokens([AddedToken(run, normalized=True, special=False) for run in SPACE_RUNS])
    return tokenizer


def neox_shaped(tokenizer: Tokenizer) -> dict:
    """The trained tokenizer as JSON with GPT-NeoX's header and "a b" merges."""
    spec = json.loads(tokenizer.to_str())
    spec["pre_tokenizer"] = dict(BYTE_LEVEL)
    spec["post_processor"] = dict(BYTE_LEVEL)
    spec["decoder"] = dict(BYTE_LEVEL)
    model = spec["model"]
    model["merges"] = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    for key in ("byte_fallback", "ignore_merges"):  # absent from GPT-NeoX's file
        model.pop(key, None)
    return spec


def variants(base: dict) -> dict[str, dict]:
    pairs = json.loads(json.dumps(base))
    pairs["model"]["merges"] = [m.split(" ") for m in base["model"]["merges"]]

    prefix = json.loads(json.dumps(base))
    prefix["pre_tokenizer"]["add_prefix_space"] = True

    flags = json.loads(json.dumps(base))
    next_id = 1 + max(t["id"] for t in base["added_tokens"])
    extra = [
        dict(content="<|mask|>", special=True, lstrip=True, rstrip=True, normalized=False),
        dict(content="[WORD]", special=False, single_word=True, normalized=False),
        dict(content="e\u0301t\u00e9", special=False, normalized=True),  # matched as NFC "été"
        dict(content="A\u030a", special=False, normalized=False),  # matched before NFC only
        dict(content="\t\t", special=False, normalized=True),
    ]
    for i, token in enumerate(extra):
        flags["added_tokens"].append(
            {"id": next_id + i, "single_word": False, "lstrip": False, "rstrip": False} | token
        )
    return {
        "tokenizer.json": base,
        "tokenizer-merges-pairs.json": pairs,
        "tokenizer-prefix-space.json": prefix,
        "tokenizer-added-flags.json": flags,
    }


def random_texts(count: int, seed: int = 0) -> list[str]:
    """Short strings mixing ASCII with characters drawn from every Unicode category."""
    rng = random.Random(seed)
    by_category: dict[str, list[str]] = {}
    for cp in range(0x110000):
        if not 0xD800 <= cp < 0xE000:
            by_category.setdefault(unicodedata.category(chr(cp)), []).append(chr(cp))
    categories = sorted(by_category)
    ascii_pool = "abcXYZ019 '\t\n.,!-_"
    texts = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randint(1, 24)):
            if rng.random() < 0.5:
                chars.append(rng.choice(ascii_pool))
            else:
                chars.append(rng.choice(by_category[rng.choice(categories)]))
        texts.append("".join(chars))
    return texts


def decode_cases(tokenizer: Tokenizer, count: int, seed: int = 0) -> list[list[int]]:
    """Random id sequences, many of them byte tokens that cut UTF-8 characters apart."""
    rng = random.Random(seed)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    byte_ids = sorted(tokenizer.token_to_id(c) for c in pre_tokenizers.ByteLevel.alphabet())
    high_bytes = [i for i in byte_ids if tokenizer.id_to_token(i) >= "\u00a1"]
    cases = []
    for _ in range(count):
        pool = rng.choice([byte_ids, high_bytes, list(range(size))])
        cases.append([rng.choice(pool) for _ in range(rng.randint(1, 12))])
    return cases


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    base = neox_shaped(build_base())
    texts = CORPUS + random_texts(150)
    expected = {"tokenizers_version": tokenizers.__version__, "texts": texts, "encode": {}, "decode": {}}
    for name, spec in variants(base).items():
        text = json.dumps(spec, ensure_ascii=False, separators=(",", ":"))
        (OUT / name).write_text(text, encoding="utf-8")
        reference = Tokenizer.from_str(text)
        encodings = [reference.encode(t).ids for t in texts]
        expected["encode"][name] = encodings
        ids_lists = decode_cases(reference, 60) + [e for e in encodings if e][:40]
        expected["decode"][name] = [
            {"ids": ids, "text": reference.decode(ids, skip_special_tokens=False)} for ids in ids_lists
        ]
    assert expected["encode"]["tokenizer.json"] == expected["encode"]["tokenizer-merges-pairs.json"]
    (OUT / "expected.json").write_text(
        json.dumps(expected, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
    )
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(texts)} texts x {len(expected['encode'])} tokenizers to {OUT} ({total // 1024} KB)")


if __name__ == "__main__":
    main()
