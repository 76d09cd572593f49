"""Writes the (gold, completion) pairs that test the math and gsm8k graders against math-verify, each labelled
by math-verify itself (the reference call: verify(parse("$gold$"), parse(completion))).
  python python/scripts/make_grading_pairs.py test/fixtures/grading
writes math-pairs.jsonl and gsm8k-pairs.jsonl: {"answer", "completion", "label", "kind"} per line."""
import json
import os
import sys

from math_verify import parse, verify

# (gold, [completions]) by kind: right answers in other forms, and plainly wrong ones beside them.
MATH = {
    "fraction-decimal": [
        ("\\frac12", ["0.5", "\\boxed{0.5}", "$\\frac{1}{2}$", "\\boxed{1/2}", "\\boxed{0.25}", "\\boxed{2}", "The answer is $0.50$."]),
        ("\\frac{3}{4}", ["\\boxed{0.75}", "$\\dfrac34$", "\\boxed{\\tfrac{3}{4}}", "\\boxed{0.7}", "\\boxed{\\frac{4}{3}}", "3/4"]),
        ("0.125", ["\\boxed{\\frac18}", "\\boxed{1/8}", "\\boxed{0.12}", "$\\frac{1}{8}$", "\\boxed{8}"]),
        ("\\frac{2}{3}", ["\\boxed{\\frac{4}{6}}", "\\boxed{0.667}", "\\boxed{2/3}", "\\boxed{\\frac{3}{2}}", "\\boxed{0.6}"]),
    ],
    "latex-shorthand": [
        ("1/2", ["\\boxed{\\frac12}", "$\\frac 1 2$", "\\boxed{\\dfrac{1}{2}}", "\\boxed{\\frac21}", "\\boxed{12}"]),
        ("\\frac{5}{2}", ["\\boxed{2.5}", "\\boxed{5/2}", "\\boxed{2\\frac{1}{2}}", "\\boxed{\\frac52}", "\\boxed{\\frac25}"]),
    ],
    "radicals": [
        ("2\\sqrt{3}", ["\\boxed{\\sqrt{12}}", "$2\\sqrt3$", "\\boxed{\\sqrt{3}\\cdot 2}", "\\boxed{3\\sqrt{2}}", "\\boxed{\\sqrt{6}}", "\\boxed{2\\sqrt{3}}"]),
        ("\\sqrt{2}/2", ["\\boxed{\\frac{\\sqrt2}{2}}", "\\boxed{\\frac{1}{\\sqrt{2}}}", "\\boxed{\\sqrt{2}}", "\\boxed{0.5}"]),
        ("3\\sqrt{5}", ["\\boxed{\\sqrt{45}}", "\\boxed{5\\sqrt{3}}", "\\boxed{\\sqrt{15}}", "$3 \\sqrt 5$"]),
    ],
    "sets-and-order": [
        ("\\{1,2\\}", ["$\\{2,1\\}$", "\\boxed{\\{1, 2\\}}", "\\boxed{\\{1,3\\}}", "\\boxed{\\{1,2,3\\}}"]),
        ("x^2+2x+1", ["\\boxed{1+2x+x^2}", "\\boxed{(x+1)^2}", "\\boxed{x^2+2x-1}", "\\boxed{2x+x^2+1}", "\\boxed{x^2+1}"]),
        ("3, 5", ["\\boxed{5, 3}", "\\boxed{3,5}", "\\boxed{3}", "\\boxed{3, 4}"]),
        ("a+b", ["\\boxed{b+a}", "\\boxed{a-b}", "\\boxed{ab}"]),
        ("(1,2)", ["\\boxed{(1, 2)}", "\\boxed{(2,1)}", "\\boxed{(1,3)}"]),
        ("[0,1)", ["\\boxed{[0, 1)}", "\\boxed{(0,1)}", "\\boxed{[0,1]}"]),
    ],
    "percent": [
        ("50\\%", ["\\boxed{50\\%}", "\\boxed{50}", "\\boxed{0.5}", "\\boxed{5\\%}", "\\boxed{60\\%}"]),
        ("25", ["\\boxed{25\\%}", "\\boxed{0.25}", "\\boxed{2.5}", "\\boxed{24}"]),
        ("12.5\\%", ["\\boxed{12.5\\%}", "\\boxed{12.5}", "\\boxed{0.125}", "\\boxed{12\\%}"]),
    ],
    "degrees": [
        ("90^\\circ", ["\\boxed{90}", "\\boxed{90^{\\circ}}", "\\boxed{90^\\circ}", "\\boxed{\\frac{\\pi}{2}}", "\\boxed{45^\\circ}", "\\boxed{180}"]),
        ("30", ["\\boxed{30^\\circ}", "\\boxed{30 degrees}", "\\boxed{\\frac{\\pi}{6}}", "\\boxed{60^\\circ}"]),
    ],
    "text": [
        ("5", ["\\boxed{\\text{5}}", "\\boxed{5\\text{ cm}}", "\\boxed{\\text{five}}", "\\boxed{5\\text{ and }6}", "5\\text{ and }6", "\\boxed{\\textbf{5}}", "\\boxed{6\\text{ cm}}"]),
        ("56", ["5\\text{ and }6", "\\boxed{5\\text{ and }6}", "\\boxed{56}", "\\boxed{5 6}", "\\boxed{65}"]),
        ("12", ["\\boxed{12 \\text{ apples}}", "\\boxed{\\$12}", "\\boxed{12.00}", "\\boxed{\\mbox{12}}", "\\boxed{13 \\text{ apples}}"]),
    ],
    "outside-boxed": [
        ("7", ["The answer is 7.", "So we get $x = 7$.", "Therefore the result is 7", "The answer is 8.", "x = 7, so 2x = 14", "7"]),
        ("\\frac{1}{3}", ["So the probability is $\\frac{1}{3}$.", "Hence 1/3.", "We get $\\frac{1}{4}$.", "It is 0.333"]),
        ("-4", ["The answer is $-4$.", "x = -4", "The answer is 4.", "Final: $-4$"]),
        ("100", ["There are 100 ways.", "So $10^2$ in total.", "There are 1000 ways.", "We find $\\boxed{100}$ ways."]),
    ],
    "integers-and-forms": [
        ("1000", ["\\boxed{1,000}", "\\boxed{1000}", "\\boxed{10^3}", "\\boxed{1000.0}", "\\boxed{100}", "\\boxed{1\\,000}"]),
        ("-3", ["\\boxed{-3}", "\\boxed{- 3}", "\\boxed{3}", "\\boxed{-3.0}", "\\boxed{-\\frac{6}{2}}"]),
        ("0", ["\\boxed{0}", "\\boxed{0.0}", "\\boxed{-0}", "\\boxed{1}", "\\boxed{\\emptyset}"]),
        ("2^{10}", ["\\boxed{1024}", "\\boxed{2^{10}}", "\\boxed{1000}", "\\boxed{4^5}"]),
        ("\\pi", ["\\boxed{\\pi}", "\\boxed{3.14}", "\\boxed{3.14159}", "\\boxed{2\\pi}", "\\boxed{\\frac{2\\pi}{2}}"]),
        ("e^2", ["\\boxed{e^{2}}", "\\boxed{e \\cdot e}", "\\boxed{2e}", "\\boxed{7.389}"]),
    ],
    "expressions": [
        ("x=2", ["\\boxed{2}", "\\boxed{x=2}", "\\boxed{x = 2}", "\\boxed{x=3}", "\\boxed{y=2}"]),
        ("\\frac{x+1}{2}", ["\\boxed{\\frac{1+x}{2}}", "\\boxed{0.5x+0.5}", "\\boxed{\\frac{x}{2}+\\frac12}", "\\boxed{\\frac{x-1}{2}}", "\\boxed{x+1}"]),
        ("y = 2x + 3", ["\\boxed{y=3+2x}", "\\boxed{2x+3}", "\\boxed{y=2x-3}", "\\boxed{y=3x+2}"]),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", ["\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\boxed{\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}}", "\\boxed{(1,2)}"]),
        ("\\infty", ["\\boxed{\\infty}", "\\boxed{+\\infty}", "\\boxed{-\\infty}", "\\boxed{\\text{infinity}}"]),
        ("(-\\infty, 2]", ["\\boxed{(-\\infty,2]}", "\\boxed{x \\le 2}", "\\boxed{(-\\infty, 2)}", "\\boxed{[2, \\infty)}"]),
    ],
    "wrong-and-empty": [
        ("42", ["", "I don't know.", "\\boxed{}", "\\boxed{41}", "\\boxed{4.2}", "\\boxed{420}", "\\boxed{42}", "forty-two"]),
        ("17", ["\\boxed{17} but maybe \\boxed{18}", "\\boxed{18} or rather \\boxed{17}", "\\boxed{71}", "17 or 18"]),
        ("2", ["\\boxed{1+1}", "\\boxed{two}", "\\boxed{\\frac{4}{2}}", "\\boxed{2.0001}", "\\boxed{\\sqrt{4}}", "\\boxed{-2}"]),
        ("9", ["\\boxed{3^2}", "\\boxed{\\sqrt{81}}", "\\boxed{-9}", "\\boxed{\\pm 9}", "\\boxed{8.99}"]),
    ],
}

# GSM8K: the reference is a worked solution ending in `#### <answer>`; completions as models write them.
GSM8K = [
    ("She has 3 + 4 = 7 apples.\n#### 7", ["7", "She has 7 apples.", "#### 7", "The answer is 8.", "7 apples, then 2 more: 9", "\\boxed{7}"]),
    ("Half of it: 1/2\n#### 1/2", ["#### 1/2", "The answer is 0.5", "#### 2", "1/2", "\\boxed{\\frac12}", "2"]),
    ("Total 1,234 dollars\n#### 1,234", ["#### 1234", "The total is $1,234.", "1,234", "#### 1,243", "1.234"]),
    ("#### -5", ["-5", "#### -5", "5", "The change is -5 degrees.", "\\boxed{-5}"]),
    ("It costs 18 dollars.\n#### 18", ["$18.00", "#### 18", "\\boxed{18}", "It costs $19.", "18.5"]),
    ("5 and 6 make 56 when written side by side\n#### 56", ["5\\text{ and }6", "#### 56", "\\boxed{56}", "56", "5 and 6"]),
    ("#### 0.25", ["1/4", "#### 0.25", "25%", "0.52", "\\frac{1}{4}"]),
    ("#### 1000000", ["1,000,000", "#### 1000000", "one million", "10^6", "100000"]),
    ("#### 3", ["The answer is 3.", "3 cats and 4 dogs", "#### 3", "There are 3.", "33"]),
    ("#### 12", ["12", "twelve", "#### 12.0", "2 dozen = 24", "12 per box, so 12"]),
]


def label(gold: str, completion: str) -> int:
    return int(bool(verify(parse(f"${gold}$"), parse(completion))))


def gsm8k_gold(solution: str) -> str:
    return solution[solution.rfind("####") + 4:].strip().replace(",", "")


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "math-pairs.jsonl"), "w") as f:
        n = 0
        for kind, cases in MATH.items():
            for gold, completions in cases:
                for completion in completions:
                    f.write(json.dumps({"answer": gold, "completion": completion, "label": label(gold, completion), "kind": kind}) + "\n")
                    n += 1
    print(f"math: {n} pairs")
    with open(os.path.join(out_dir, "gsm8k-pairs.jsonl"), "w") as f:
        n = 0
        for solution, completions in GSM8K:
            for completion in completions:
                f.write(json.dumps({"answer": solution, "completion": completion, "label": label(gsm8k_gold(solution), completion), "kind": "gsm8k"}) + "\n")
                n += 1
    print(f"gsm8k: {n} pairs")


if __name__ == "__main__":
    main(sys.argv[1])
