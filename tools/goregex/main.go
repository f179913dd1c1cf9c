// Command goregex generates the Go-side data of herald's Go regexp
// translation (src/goregex): the Unicode class names Go's regexp
// accepts, and a table of patterns with what Go's regexp says about them
// (compile error, or which inputs match). Run it with the Go toolchain whose
// behaviour herald follows, from the repository root:
//
//	go run tools/goregex/main.go
//
// With -fuzz N it instead prints N random patterns with Go's verdicts, as
// JSON lines for the ignored test random_patterns_as_go:
//
//	go run tools/goregex/main.go -fuzz 40000 -seed 1 > /tmp/cases.jsonl
//	HERALD_GOREGEX_FUZZ=/tmp/cases.jsonl cargo test --lib random_patterns_as_go -- --ignored
//
// The patterns come from Go's own regexp tests (regexp/syntax/parse_test.go,
// regexp/find_test.go, regexp/all_test.go; Copyright The Go Authors,
// BSD-style licence) plus herald's own edge cases.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Patterns of regexp/syntax/parse_test.go (parseTests and the flag tables).
var parsePatterns = []string{
	`a`,
	`a.`,
	`a.b`,
	`ab`,
	`a.b.c`,
	`abc`,
	`a|^`,
	`a|b`,
	`(a)`,
	`(a)|b`,
	`a*`,
	`a+`,
	`a?`,
	`a{2}`,
	`a{2,3}`,
	`a{2,}`,
	`a*?`,
	`a+?`,
	`a??`,
	`a{2}?`,
	`a{2,3}?`,
	`a{2,}?`,
	`x{1001`,
	`x{9876543210`,
	`x{9876543210,`,
	`x{2,1`,
	`x{1,9876543210`,
	``,
	`|`,
	`|x|`,
	`.`,
	`^`,
	`$`,
	`\|`,
	`\(`,
	`\)`,
	`\*`,
	`\+`,
	`\?`,
	`{`,
	`}`,
	`\.`,
	`\^`,
	`\$`,
	`\\`,
	`[ace]`,
	`[abc]`,
	`[a-z]`,
	`[a]`,
	`\-`,
	`-`,
	`\_`,
	`abc|def`,
	`abc|def|ghi`,
	`[[:lower:]]`,
	`[^[:lower:]]`,
	`[[:^lower:]]`,
	`(?i)[[:lower:]]`,
	`(?i)[a-z]`,
	`(?i)[^[:lower:]]`,
	`(?i)[[:^lower:]]`,
	`\d`,
	`\D`,
	`\s`,
	`\S`,
	`\w`,
	`\W`,
	`(?i)\w`,
	`(?i)\W`,
	`[^\\]`,
	`\p{Braille}`,
	`\P{Braille}`,
	`\p{^Braille}`,
	`\P{^Braille}`,
	`\pZ`,
	`[\p{Braille}]`,
	`[\P{Braille}]`,
	`[\p{^Braille}]`,
	`[\P{^Braille}]`,
	`[\pZ]`,
	`\p{Lu}`,
	`\p{Uppercase_Letter}`,
	`\p{upper case-let ter}`,
	`\p{__upper case-let ter}`,
	`[\p{Lu}]`,
	`(?i)[\p{Lu}]`,
	`\p{Any}`,
	`\p{^Any}`,
	`(?i)\p{ascii}`,
	`\p{Assigned}`,
	`\p{^Assigned}`,
	`[\012-\234]\141`,
	`[\x{41}-\x7a]\x61`,
	`a{,2}`,
	`\.\^\$\\`,
	`[a-zABC]`,
	`[^a]`,
	`[α-ε☺]`,
	`a*{`,
	`(?:ab)*`,
	`(ab)*`,
	`ab|cd`,
	`a(b|c)d`,
	`(?:a)`,
	`(?:ab)(?:cd)`,
	`(?:a+b+)(?:c+d+)`,
	`(?:a+|b+)|(?:c+|d+)`,
	`(?:a|b)|(?:c|d)`,
	`a|.`,
	`.|a`,
	`(?:[abc]|A|Z|hello|world)`,
	`(?:[abc]|A|Z)`,
	`\Q+|*?{[\E`,
	`\Q+\E+`,
	`\Qab\E+`,
	`\Q\\E`,
	`\Q\\\E`,
	`(?m)^`,
	`(?m)$`,
	`(?-m)^`,
	`(?-m)$`,
	`(?m)\A`,
	`(?m)\z`,
	`(?-m)\A`,
	`(?-m)\z`,
	`(?P<name>a)`,
	`(?<name>a)`,
	`[Aa]`,
	`[\x{100}\x{101}]`,
	`[Δδ]`,
	`abcde`,
	`[Aa][Bb]cd`,
	`abc|abd|aef|bcx|bcy`,
	`ax+y|ax+z|ay+w`,
	`(?:.)`,
	`(?:x|(?:xa))`,
	`(?:.|(?:.a))`,
	`(?:A(?:A|a))`,
	`(?:A|a)`,
	`A|(?:A|a)`,
	`(?s).`,
	`(?-s).`,
	`(?:(?:^).)`,
	`(?-s)(?:(?:^).)`,
	`[\s\S]a`,
	`abc|abd`,
	`a(?:b)c|abd`,
	`abc|x|abd`,
	`(?i)abc|ABD`,
	`[ab]c|[ab]d`,
	`.c|.d`,
	`x{2}|x{2}[0-9]`,
	`x{2}y|x{2}[0-9]y`,
	`a.*?c|a.*?b`,
	`((((((((((x{2}){2}){2}){2}){2}){2}){2}){2}){2}))`,
	`((((((((((x{1}){2}){2}){2}){2}){2}){2}){2}){2}){2})`,
	"(",
	`AbCdE`,
	`A[F-g]`,
	`[[:upper:]]`,
	"(|)^$.[*+?]{5,10},\\",
	"\n",
	`[a\n]`,
}

// Patterns and texts of regexp/find_test.go (findTests).
var findPatterns = [][2]string{
	{``, ``},
	{`^abcdefg`, "abcdefg"},
	{`a+`, "baaab"},
	{"abcd..", "abcdef"},
	{`a`, "a"},
	{`x`, "y"},
	{`b`, "abc"},
	{`.`, "a"},
	{`.*`, "abcdef"},
	{`^`, "abcde"},
	{`$`, "abcde"},
	{`^abcd$`, "abcd"},
	{`^bcd'`, "abcdef"},
	{`^abcd$`, "abcde"},
	{`a+`, "baaab"},
	{`a*`, "baaab"},
	{`[a-z]+`, "abcd"},
	{`[^a-z]+`, "ab1234cd"},
	{`[a\-\]z]+`, "az]-bcz"},
	{`[^\n]+`, "abcd\n"},
	{`[日本語]+`, "日本語日本語"},
	{`日本語+`, "日本語"},
	{`日本語+`, "日本語語語語"},
	{`()`, ""},
	{`(a)`, "a"},
	{`(.)(.)`, "日a"},
	{`(.*)`, ""},
	{`(.*)`, "abcd"},
	{`(..)(..)`, "abcd"},
	{`(([^xyz]*)(d))`, "abcd"},
	{`((a|b|c)*(d))`, "abcd"},
	{`(((a|b|c)*)(d))`, "abcd"},
	{`\a\f\n\r\t\v`, "\a\f\n\r\t\v"},
	{`[\a\f\n\r\t\v]+`, "\a\f\n\r\t\v"},
	{`a*(|(b))c*`, "aacc"},
	{`(.*).*`, "ab"},
	{`[.]`, "."},
	{`/$`, "/abc/"},
	{`/$`, "/abc"},
	{`.`, "abc"},
	{`(.)`, "abc"},
	{`.(.)`, "abcd"},
	{`ab*`, "abbaab"},
	{`a(b*)`, "abbaab"},
	{`ab$`, "cab"},
	{`axxb$`, "axxcb"},
	{`data`, "daXY data"},
	{`da(.)a$`, "daXY data"},
	{`zx+`, "zzx"},
	{`ab$`, "abcab"},
	{`(aa)*$`, "a"},
	{`(?:.|(?:.a))`, ""},
	{`(?:A(?:A|a))`, "Aa"},
	{`(?:A|(?:A|a))`, "a"},
	{`(a){0}`, ""},
	{`(?-s)(?:(?:^).)`, "\n"},
	{`(?s)(?:(?:^).)`, "\n"},
	{`(?:(?:^).)`, "\n"},
	{`\b`, "x"},
	{`\b`, "xx"},
	{`\b`, "x y"},
	{`\b`, "xx yy"},
	{`\B`, "x"},
	{`\B`, "xx"},
	{`\B`, "x y"},
	{`\B`, "xx yy"},
	{`(|a)*`, "aa"},
	{`0A|0[aA]`, "0a"},
	{`0[aA]|0A`, "0a"},
	{`[^\S\s]`, "abcd"},
	{`[^\S[:space:]]`, "abcd"},
	{`[^\D\d]`, "abcd"},
	{`[^\D[:digit:]]`, "abcd"},
	{`(?i)\W`, "x"},
	{`(?i)\W`, "k"},
	{`(?i)\W`, "s"},
	{`\!\"\#\$\%\&\'\(\)\*\+\,\-\.\/\:\;\<\=\>\?\@\[\\\]\^\_\{\|\}\~`, "!\"#$%&'()*+,-./:;<=>?@[\\]^_{|}~"},
	{`[\!\"\#\$\%\&\'\(\)\*\+\,\-\.\/\:\;\<\=\>\?\@\[\\\]\^\_\{\|\}\~]+`, "!\"#$%&'()*+,-./:;<=>?@[\\]^_{|}~"},
	{"\\`", "`"},
	{"[\\`]+", "`"},
	{"\ufffd", "\xff"},
	{"\ufffd", "hello\xffworld"},
	{`.*`, "hello\xffworld"},
	{`\x{fffd}`, "\xc2\x00"},
	{"[\ufffd]", "\xff"},
	{`[\x{fffd}]`, "\xc2\x00"},
}

// regexp/syntax/parse_test.go (invalidRegexps, onlyPerl, onlyPOSIX) and
// regexp/all_test.go (goodRe, badRe); the few built with strings.Repeat are
// in herald's tests instead.
var otherGoPatterns = []string{
	`(`, `)`, `(a`, `a)`, `(a))`, `(a|b|`, `a|b|)`, `(a|b|))`, `(a|b`, `a|b)`, `(a|b))`,
	`[a-z`, `([a-z)`, `[a-z)`, `([a-z]))`, `x{1001}`, `x{9876543210}`, `x{2,1}`, `x{1,9876543210}`,
	`(?P<name>a`, `(?P<name>`, `(?P<name`, `(?P<x y>a)`, `(?P<>a)`,
	`(?<name>a`, `(?<name>`, `(?<name`, `(?<x y>a)`, `(?<>a)`,
	`[a-Z]`, `(?i)[a-Z]`, `\Q\E*`, `a{100000}`, `a{100000,}`,
	"((((((((((x{2}){2}){2}){2}){2}){2}){2}){2}){2}){2})",
	`[a-b-c]`, `\Qabc\E`, `\Q*+?{[\E`, `\Q\\E`, `\Q\\\E`, `\Q\\\\E`, `\Q\\\\\E`, `(?:a)`, `(?P<name>a)`,
	"a++", "a**", "a?*", "a+*", "a{1}*", ".{1}{2}.{3}",
	``, `.`, `^.$`, `a`, `a*`, `a+`, `a?`, `a|b`, `a*|b*`, `(a*|b)(c*|d)`, `[a-z]`,
	`[a-abc-c\-\]\[]`, `[a-z]+`, `[abc]`, `[^1234]`, `[^\n]`, `\!\\`,
	`*`, `+`, `?`, `(abc`, `abc)`, `x[a-z`, `[z-a]`, `abc\`, `a*+`, `\x`,
}

// herald's own cases: each rule of Go's parser the translation follows.
var heraldPatterns = []string{
	// \Q...\E
	`\Q.*\E`, `\Q.*`, `a\Q\E*`, `\Q\E`, `x\Qa|b\Ey`, `(?i)\Qab\E`, `[\Q]\E]`,
	// escapes
	`\a\f\t\n\r\v`, `\0`, `\08`, `\012`, `\0123`, `\1`, `\12`, `\18`, `\7`, `\77`, `\777`, `\400`, `\8`, `\9`,
	`\x41`, `\x4`, `\xg1`, `\x{41}`, `\x{10FFFF}`, `\x{110000}`, `\x{}`, `\x{4g}`, `\x{`, `\x{0041}`,
	`\C`, `\Z`, `\z`, `\A`, `\G`, `\K`, `\R`, `\X`, `\h`, `\e`, `\cA`, `\N`, `\o{1}`, `\u0041`, `\U`, `\<`, `\>`,
	`\_`, `\q`, `\é`, `\ `, `\#`, `\&`, `\~`, `\-`, `\%`, `\'`, "\\`", `\"`, `\/`, `\:`, `\=`, `\@`, `\,`, `\;`,
	`[\b]`, `[\B]`, `[\A]`, `[\z]`, `[\Q]`, `[\x41-\x{5A}]`, `[\0-\7]`, `[\a]`,
	// Perl classes are ASCII
	`\d`, `\D`, `\w`, `\W`, `\s`, `\S`, `^\d+$`, `^\w+$`, `^\s$`, `\b`, `\B`, `\bé`, `é\b`, `\bcaf\b`, `\Bé`,
	`x\b`, `\by`, `(?i)\w`, `(?i)\W`, `(?i)[^\W]`, `(?i)\S`, `[\d\s]`, `[^\d]`, `[\D]`, `[^\D]`, `[\d-z]`, `[a-\d]`, `[\w-]`,
	// repetitions
	`a{,3}`, `a{,}`, `a{}`, `a{`, `{`, `}`, `x{1,a}`, `a{01}`, `a{1,02}`, `a{ 1}`, `a{1 }`, `a{1, 2}`, `a{-1}`,
	`a{1000}`, `a{1001}`, `a{0,1000}`, `a{1000,}`, `a{2,1}`, `a{0}`, `a{0,0}`, `a{1}?`, `a{2,}?`, `(a{1000}){1000}`,
	`(a{2}){500}`, `(a{2}){501}`, `(?:a{10}){100}`, `(?:a{10}){101}`, `(?:a{10})*`, `(?:(?:a{10}){10}){10}`,
	`a**`, `a++`, `a??`, `a*?`, `a+?`, `a*??`, `a{2}{3}`, `a{2}*`, `a*{2}`, `a*{`, `a*{,2}`,
	`*a`, `+a`, `?a`, `{1}a`, `(*)`, `(+a)`, `a|*`, `a|+b`, `(?i)*`, `a(?i)*`, `a(?i)+b`, `(?:)*`, `()+`, `^*`, `$+`, `\b*`, `\A?`, `x*\z*`,
	`(?U)a*`, `(?U)a*?`, `(?U:a+)b`, `a(?U)*`,
	// flags
	`(?i)abc`, `(?i)ABC`, `(?i:a)b`, `a(?i)b`, `a(?i)b|c`, `(?i)a|b`, `x(?i)(a)b`, `(?i)(?-i)a`, `(?im-sU:a)`, `(?i-m-s)`, `(?)`, `(?:)`,
	`(?i-)`, `(?-)`, `(?-:a)`, `(?i`, `(?`, `(?x)a`, `(?u)a`, `(?R)a`, `(?a)`, `(?s).`, `(?s:.)`, `(?-s).`, `(?m)^a$`, `^a$`, `(?m:^)b`,
	`(?U)`, `(?imsU)a`, `(?=a)`, `(?!a)`, `(?<=a)`, `(?<!a)`, `(?>a)`, `(?#c)`, `(?|a)`, `(?P=n)`, `(?P>n)`, `(?'n'a)`, `(?P<n>a)(?P<n>b)`,
	`(?<n>a)`, `(?P<n1_x>a)`, `(?P<é>a)`, `(?P<n-1>a)`, `(?<>a)`, `(?P<`, `(?<`, `(?P`,
	// anchors and lines
	`^`, `$`, `^$`, `a$`, `^b`, `(?m)a$`, `(?m)^b`, `\Aa`, `a\z`, `(?m)\Aa`, `(?m)b\z`, `(?m)$\n`, `(?s)a.b`, `a.b`, `a[^x]b`,
	// classes
	`[]a]`, `[^]a]`, `[]`, `[^]`, `[a-]`, `[-a]`, `[a-b-c]`, `[z-a]`, `[a-a]`, `[\x{10FFFF}-\x{10FFFF}]`,
	`[a&&b]`, `[a--b]`, `[a~~b]`, `[[]`, `[a[b]`, `[[a]]`, `[\[]`, `[&]`, `[&&]`, `[~]`, `[^^]`, `[a^]`, `[#]`, `[ ]`,
	`[[:alpha:]]`, `[[:^alpha:]]`, `[[:word:]]`, `[[:space:]]`, `[[:foo:]]`, `[[:alpha:]`, `[[:alpha]`, `[[:a]b:]`, `[:alpha:]`,
	`[[:alnum:]]`, `[[:ascii:]]`, `[[:blank:]]`, `[[:cntrl:]]`, `[[:digit:]]`, `[[:graph:]]`, `[[:lower:]]`, `[[:print:]]`,
	`[[:punct:]]`, `[[:upper:]]`, `[[:xdigit:]]`, `[[:^space:]]`, `(?i)[[:upper:]]`, `(?i)[^[:lower:]]`,
	`[\d]`, `[^\s\S]`, `[\s\S]`, `[α-ω]`, `(?i)[α-ω]`, `[^a]`, `(?i)[^a]`, `(?i)[k]`, `(?i)k`, `(?i)s`, `(?i)ſ`, `(?i)Σ`, `(?i)ß`, `(?i)é`,
	// Unicode classes
	`\p{Greek}`, `\p{greek}`, `\p{GREEK}`, `\p{Gre ek}`, `\p{Gr-eek}`, `\p{ Greek}`, `\p{^Greek}`, `\P{Greek}`, `\P{^Greek}`,
	`\pL`, `\pl`, `\PL`, `\pN`, `\pLu`, `\p{Lu}`, `\p{lu}`, `\p{L}`, `\p{LC}`, `\p{Lc}`, `\p{Lt}`, `\p{Nl}`, `\p{Nd}`, `\p{Cf}`, `\p{Co}`, `\p{Cs}`, `\P{Cs}`,
	`\p{Cn}`, `\p{C}`, `\p{Cc}`, `\p{Zs}`, `\p{Z}`, `\p{So}`, `\p{S}`, `\p{P}`, `\p{M}`,
	`\p{Letter}`, `\p{letter}`, `\p{Uppercase_Letter}`, `\p{Combining_Mark}`, `\p{punct}`, `\p{digit}`, `\p{cntrl}`, `\p{Other}`,
	`\p{Punctuation}`, `\p{Unassigned}`, `\p{Surrogate}`, `\p{Any}`, `\p{any}`, `\P{Any}`, `\p{^Any}`, `\p{ASCII}`, `\p{ascii}`, `\P{ASCII}`,
	`\p{Assigned}`, `\P{Assigned}`, `\p{Han}`, `\p{Latin}`, `\p{Common}`, `\p{Inherited}`, `\p{Arabic}`, `\p{Cyrillic}`, `\p{Nko}`,
	`\p{Old_Italic}`, `\p{OldItalic}`, `\p{Katakana_Or_Hiragana}`, `\p{Zyyy}`, `\p{Grek}`, `\p{Emoji}`, `\p{Alphabetic}`,
	`\p{White_Space}`, `\p{Garay}`, `\p{sc=Greek}`, `\p{gc=Lu}`, `\p{Script=Greek}`, `\p{}`, `\p`, `\P`, `\p{Greek`, `\pé`, `\p{^}`,
	`[\p{Greek}a]`, `[^\p{Greek}]`, `[\P{Greek}]`, `[\pL\d]`, `[^\pL]`, `(?i)\p{Lu}`, `(?i)\P{Lu}`, `(?i)[\p{Lu}]`, `(?i)[^\p{Lu}]`,
	`(?i)\p{Greek}`, `(?i)\P{ASCII}`, `(?i)\p{ascii}`, `[\p{Any}]`, `[^\p{Any}]`, `[\P{Any}a]`, `[\p{Cs}]`, `[\P{Cs}]`, `[\p{Cs}a]`,
	// alternation, groups
	`|`, `a|`, `|a`, `a||b`, `(|)`, `()`, `(a|b)c`, `a|b|c`, `abc|abd`, `(?:a|b)*c`, `((a))`, `(((a|b)))`,
	// herald-like messages
	`^Health`, `.*failed.*`, `dry-run`, `\d+`, `(?i)error`, `^(?:Reconciliation|Health) (?:finished|check)`,
	`revision: \w+@sha1:[0-9a-f]{7,40}`, `\bitems\b`,
}

// Texts every pattern is matched against.
var corpus = []string{
	"", "a", "A", "b", "B", "c", "ab", "aa", "abc", "ABC", "aBc", "abd", "abcd", "xyz", "x", "k", "K", "s", "S",
	"0", "1", "7", "123", "a1", "1a", "_", "a_b", " ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\a", "\x00", "\x08", "\x7f",
	"a\nb", "x\n", "\nx", "x y", "xx yy", "foo bar", "é", "É", "café", "cafe", "ß", "ẞ", "ſ", "\u212a", "Ω", "ω", "α", "Σ", "σ", "ς",
	"Σσς", "λόγος", "日本語", "\u0663", "\u0661\u0662\u0663", "\u2460", "\U0001d7d8", "\u00a0", "\u2028", "\u3000",
	"\u0378", "\U0001f600", "\u216b", "\u01c5", "\u200b", "\ue000", "\u0301", "e\u0301", "\ufffd", "\U0010ffff",
	"{", "}", "a{", "a{,3}", "a{,}", "a{1}", "a{01}", "x{1,a}", ".*", "a.b", "\\", "[", "]", "-", "&", "~", "^", "$",
	"|", "(", ")", "*", "+", "?", "#", "<", ">", "'", "\"", "`", "/", "%", ":", "=", "@", ",", ";", "!",
	"a&&b", "a--b", "a~~b", "&", "aaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"Health check passed", "apply failed", "dry-run failed", "reconciliation succeeded", "error: 42 items",
	"ERROR in 3 items", "Reconciliation finished in 2s", "revision: main@sha1:0123456789abcdef",
	"\u0663 items", "caf\u00e9 items",
}

func main() {
	fuzz := flag.Int("fuzz", 0, "print this many random patterns with Go's verdicts instead")
	seed := flag.Int64("seed", 1, "seed of -fuzz")
	flag.Parse()
	if *fuzz > 0 {
		randomCases(*fuzz, *seed)
		return
	}
	if err := os.WriteFile("src/goregex/unicode_names.rs", []byte(unicodeNames()), 0o644); err != nil {
		panic(err)
	}
	if err := os.WriteFile("src/goregex/go_cases.rs", []byte(cases()), 0o644); err != nil {
		panic(err)
	}
}

func header() string {
	return fmt.Sprintf("// @generated by tools/goregex with %s (Unicode %s). Do not edit.\n\n",
		runtime.Version(), unicode.Version)
}

// canonicalName is the name normalisation of Go's regexp/syntax: separators
// (_ - space) dropped, first letter upper case, the rest lower case.
func canonicalName(name string) string {
	var b []byte
	first := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_' || c == '-' || c == ' ':
			continue
		case first:
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			first = false
		default:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
		}
		b = append(b, c)
	}
	return string(b)
}

func unicodeNames() string {
	type entry struct{ name, table string }
	found := map[string]string{}
	add := func(canonical, table string) {
		if _, ok := found[canonical]; !ok {
			found[canonical] = table
		}
	}
	// The lookup order of Go's unicodeTable: special names, categories,
	// scripts, category aliases.
	add("Any", "Table::Any")
	add("Assigned", "Table::Assigned")
	add("Ascii", "Table::Ascii")
	add("Lc", `Table::Category("LC")`)
	for name := range unicode.Categories {
		if canonicalName(name) == name {
			add(name, fmt.Sprintf("Table::Category(%q)", name))
		}
	}
	for name := range unicode.Scripts {
		if canonicalName(name) == name {
			add(name, fmt.Sprintf("Table::Script(%q)", name))
		}
	}
	for alias, name := range unicode.CategoryAliases {
		add(canonicalName(alias), fmt.Sprintf("Table::Category(%q)", name))
	}
	var entries []entry
	for name, table := range found {
		// Every name must be one Go's regexp accepts, every other script not.
		if _, err := regexp.Compile(`\p{` + name + `}`); err != nil {
			panic(err)
		}
		entries = append(entries, entry{name, table})
	}
	for name := range unicode.Scripts {
		if _, ok := found[name]; !ok {
			if _, err := regexp.Compile(`\p{` + name + `}`); err == nil {
				panic("unexpectedly accepted: " + name)
			}
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var out strings.Builder
	out.WriteString(header())
	out.WriteString("use super::Table;\n\n")
	out.WriteString("/// The names Go's regexp accepts in `\\p{…}`, in canonical form (see\n")
	out.WriteString("/// `canonical_name`), sorted, with the table each one names.\n")
	out.WriteString("pub(super) const NAMES: &[(&str, Table)] = &[\n")
	for _, e := range entries {
		fmt.Fprintf(&out, "    (%q, %s),\n", e.name, e.table)
	}
	out.WriteString("];\n")
	return out.String()
}

// rustString is s as a Rust string literal.
func rustString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == ' ' || (r < utf8.RuneSelf && unicode.IsPrint(r)):
			b.WriteRune(r)
		case r >= utf8.RuneSelf && unicode.IsPrint(r) && !unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, `\u{%x}`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func cases() string {
	type testCase struct {
		pattern string
		inputs  []string
	}
	var all []testCase
	index := map[string]int{}
	addCase := func(pattern string, inputs ...string) {
		if !utf8.ValidString(pattern) {
			return
		}
		var valid []string
		for _, in := range inputs {
			if utf8.ValidString(in) {
				valid = append(valid, in)
			}
		}
		if i, ok := index[pattern]; ok {
			all[i].inputs = append(all[i].inputs, valid...)
			return
		}
		index[pattern] = len(all)
		all = append(all, testCase{pattern, valid})
	}
	for _, p := range parsePatterns {
		addCase(p)
	}
	for _, pt := range findPatterns {
		addCase(pt[0], pt[1])
	}
	for _, p := range otherGoPatterns {
		addCase(p)
	}
	for _, p := range heraldPatterns {
		addCase(p)
	}

	var out strings.Builder
	out.WriteString(header())
	out.WriteString("/// A pattern and what Go's regexp says about it.\n")
	out.WriteString("pub(super) struct Case {\n    pub pattern: &'static str,\n    pub inputs: &'static [&'static str],\n    pub go: Go,\n}\n\n")
	out.WriteString("pub(super) enum Go {\n    /// Go's error, without its `error parsing regexp: ` prefix.\n    Err(&'static str),\n    /// Whether each input matches.\n    Ok(&'static str),\n}\n\n")
	out.WriteString("/// Texts every pattern of [`CASES`] is matched against.\n")
	out.WriteString("pub(super) const CORPUS: &[&str] = &[\n")
	for _, c := range corpus {
		fmt.Fprintf(&out, "    %s,\n", rustString(c))
	}
	out.WriteString("];\n\n")
	out.WriteString("/// What Go's `regexp.Compile` says of each pattern: its error, or for\n")
	out.WriteString("/// each of the case's own inputs then each text of [`CORPUS`], whether\n")
	out.WriteString("/// `MatchString` is true ('1') or false ('0').\n")
	out.WriteString("pub(super) const CASES: &[Case] = &[\n")
	for _, c := range all {
		re, err := regexp.Compile(c.pattern)
		var goResult string
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
			goResult = fmt.Sprintf("Go::Err(%s)", rustString(msg))
		} else {
			var bits strings.Builder
			for _, in := range append(append([]string{}, c.inputs...), corpus...) {
				if re.MatchString(in) {
					bits.WriteByte('1')
				} else {
					bits.WriteByte('0')
				}
			}
			goResult = fmt.Sprintf("Go::Ok(%q)", bits.String())
		}
		inputs := make([]string, len(c.inputs))
		for i, in := range c.inputs {
			inputs[i] = rustString(in)
		}
		fmt.Fprintf(&out, "    Case {\n        pattern: %s,\n        inputs: &[%s],\n        go: %s,\n    },\n",
			rustString(c.pattern), strings.Join(inputs, ", "), goResult)
	}
	out.WriteString("];\n")
	return out.String()
}

// Pieces random patterns are made of: Go syntax, and text that means
// something else to the regex crate.
var fuzzTokens = []string{
	"a", "b", "k", "s", "A", "0", "1", "é", "ſ", "\u212a", "٣", " ", "-", "&", "~", "^", "$", ".", "|", "(", ")",
	"(?:", "(?i)", "(?i:", "(?-i)", "(?s)", "(?m)", "(?U)", "(?P<n>", "(?<n>", "*", "+", "?", "*?", "{2}", "{1,3}",
	"{,2}", "{0}", "{2,}", "{", "}", ",", "[", "]", "[^", `\d`, `\D`, `\w`, `\W`, `\s`, `\S`, `\b`, `\B`, `\A`,
	`\z`, `\Q`, `\E`, `\x41`, `\x{e9}`, `\p{Greek}`, `\pL`, `\PN`, `\p{^Lu}`, "[:alpha:]", "[:^digit:]", ":]",
	`\`, `\.`, `\-`, `\]`, `\[`, `\n`, `\t`, `\0`, `\12`, `\1`, "&&", "--", "~~", "\n", "λ", "Σ", "ς",
}

var fuzzCorpus = []string{
	"", "a", "b", "ab", "aa", "A", "k", "K", "\u212a", "s", "S", "ſ", "é", "É", "0", "12", "٣", " ", "-", "&", "~",
	"^", "$", ".", "|", "(", ")", "{", "}", ",", "[", "]", "\\", ":", "\n", "\t", "a\nb", "λ", "Σ", "σς", "a{,2}",
	"a{", "{2}", "aab", "ba", "0a", "a0", "x y", "é a", "\x00",
}

func randomCases(n int, seed int64) {
	r := rand.New(rand.NewSource(seed))
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(map[string][]string{"corpus": fuzzCorpus}); err != nil {
		panic(err)
	}
	for range n {
		var b strings.Builder
		for range 1 + r.Intn(14) {
			b.WriteString(fuzzTokens[r.Intn(len(fuzzTokens))])
		}
		pattern := b.String()
		record := map[string]string{"pattern": pattern}
		if re, err := regexp.Compile(pattern); err != nil {
			record["error"] = strings.TrimPrefix(err.Error(), "error parsing regexp: ")
		} else {
			var bits strings.Builder
			for _, text := range fuzzCorpus {
				if re.MatchString(text) {
					bits.WriteByte('1')
				} else {
					bits.WriteByte('0')
				}
			}
			record["matches"] = bits.String()
		}
		if err := enc.Encode(record); err != nil {
			panic(err)
		}
	}
}
