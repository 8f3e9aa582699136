/* chat.c: chat template detection and rendering (see chat.h). The output
 * of each family follows llama.cpp's llm_chat_apply_template(); the tests
 * hold llama.cpp's expected strings. */
#include "chat.h"

#include <stdint.h>
#include <string.h>

static const char *const chat_names[CHAT_FAMILY_COUNT] = {
    [CHAT_CHATML] = "chatml",
    [CHAT_LLAMA2] = "llama2",
    [CHAT_LLAMA2_SYS] = "llama2-sys",
    [CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [CHAT_MISTRAL_V1] = "mistral-v1",
    [CHAT_MISTRAL_V3] = "mistral-v3",
    [CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [CHAT_MISTRAL_V7] = "mistral-v7",
    [CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [CHAT_PHI3] = "phi3",
    [CHAT_PHI4] = "phi4",
    [CHAT_FALCON3] = "falcon3",
    [CHAT_ZEPHYR] = "zephyr",
    [CHAT_GEMMA] = "gemma",
    [CHAT_LLAMA3] = "llama3",
};

const char *chat_family_name(int family)
{
    if (family < 0 || family >= CHAT_FAMILY_COUNT)
        return NULL;
    return chat_names[family];
}

static int chat_from_bytes(const char *s, size_t len)
{
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++)
        if (strlen(chat_names[f]) == len && memcmp(chat_names[f], s, len) == 0)
            return f;
    return -1;
}

int chat_family_from_name(const char *name)
{
    return name ? chat_from_bytes(name, strlen(name)) : -1;
}

typedef struct {
    const char *s;
    size_t len;
} chat_str;

static bool chat_has(chat_str t, const char *needle)
{
    size_t nl = strlen(needle);
    const char *p = t.s, *end = t.s + t.len;
    while ((size_t)(end - p) >= nl) {
        p = memchr(p, needle[0], (size_t)(end - p) - nl + 1);
        if (!p)
            return false;
        if (memcmp(p, needle, nl) == 0)
            return true;
        p++;
    }
    return false;
}

/* The tests and their order are llama.cpp's; families we do not render
 * still get their test, so that a template of theirs is not mistaken for a
 * later family of ours. */
int chat_detect(const char *tmpl, size_t len)
{
    if (!tmpl || len == 0)
        return CHAT_CHATML;
    int named = chat_from_bytes(tmpl, len);
    if (named >= 0)
        return named;
    chat_str t = {tmpl, len};
    if (chat_has(t, "<|im_start|>")) {
        if (chat_has(t, "<|im_sep|>"))
            return CHAT_PHI4;
        if (chat_has(t, "<end_of_utterance>"))
            return -1; /* SmolVLM: <|im_start|> as BOS, not ChatML */
        return CHAT_CHATML;
    }
    if ((len >= 7 && memcmp(tmpl, "mistral", 7) == 0) || chat_has(t, "[INST]")) {
        if (chat_has(t, "[SYSTEM_PROMPT]"))
            return CHAT_MISTRAL_V7;
        if (chat_has(t, "' [INST] ' + system_message") || chat_has(t, "[AVAILABLE_TOOLS]")) {
            if (chat_has(t, " [INST]"))
                return CHAT_MISTRAL_V1;
            if (chat_has(t, "\"[INST]\""))
                return CHAT_MISTRAL_V3_TEKKEN;
            return CHAT_MISTRAL_V3;
        }
        if (chat_has(t, "content.strip()"))
            return CHAT_LLAMA2_SYS_STRIP;
        if (chat_has(t, "bos_token + '[INST]"))
            return CHAT_LLAMA2_SYS_BOS;
        if (chat_has(t, "<<SYS>>"))
            return CHAT_LLAMA2_SYS;
        return CHAT_LLAMA2;
    }
    if (chat_has(t, "<|assistant|>") && chat_has(t, "<|end|>"))
        return CHAT_PHI3;
    if (chat_has(t, "[gMASK]<sop>"))
        return -1; /* ChatGLM4 */
    if (chat_has(t, "<|assistant|>") && chat_has(t, "<|user|>"))
        return chat_has(t, "</s>") ? CHAT_FALCON3 : -1 /* GLM-Edge */;
    if (chat_has(t, "<|{{ item['role'] }}|>") && chat_has(t, "<|begin_of_image|>"))
        return -1; /* GLM-Edge */
    if (chat_has(t, "<|user|>") && chat_has(t, "<|endoftext|>"))
        return CHAT_ZEPHYR;
    if (chat_has(t, "bos_token + message['role']"))
        return -1; /* Monarch */
    if (chat_has(t, "<start_of_turn>"))
        return CHAT_GEMMA;
    if (chat_has(t, "'\\n\\nAssistant: ' + eos_token"))
        return -1; /* Orion */
    if (chat_has(t, "GPT4 Correct "))
        return -1; /* OpenChat */
    if (chat_has(t, "USER: ") && chat_has(t, "ASSISTANT: "))
        return -1; /* Vicuna */
    if (chat_has(t, "### Instruction:") && chat_has(t, "<|EOT|>"))
        return -1; /* DeepSeek Coder */
    if (chat_has(t, "<|START_OF_TURN_TOKEN|>") && chat_has(t, "<|USER_TOKEN|>"))
        return -1; /* Command-R */
    if (chat_has(t, "<|start_header_id|>") && chat_has(t, "<|end_header_id|>"))
        return CHAT_LLAMA3;
    return -1;
}

/* ---- rendering ---- */

typedef enum { CHAT_SYSTEM, CHAT_USER, CHAT_ASSISTANT } chat_role;

/* Output that keeps counting past the capacity, and notes where message
 * contents went (pairs of offset and length) when asked. */
typedef struct {
    char *buf;
    size_t cap, len;
    size_t *spans;
    size_t max_spans, n_spans;
} chat_out;

static void chat_put(chat_out *o, const char *s, size_t n)
{
    if (o->cap && o->len < o->cap - 1) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len = n > SIZE_MAX - o->len ? SIZE_MAX : o->len + n;
}

static void chat_puts(chat_out *o, const char *s)
{
    chat_put(o, s, strlen(s));
}

/* Message content (every chat_str written is one). */
static void chat_put_str(chat_out *o, chat_str s)
{
    if (o->spans && s.len && o->n_spans < o->max_spans) {
        o->spans[2 * o->n_spans] = o->len;
        o->spans[2 * o->n_spans + 1] = s.len;
    }
    if (s.len)
        o->n_spans++;
    chat_put(o, s.s, s.len);
}

/* isspace() in the C locale, as llama.cpp's trim() uses it. */
static bool chat_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static chat_str chat_trim(chat_str s)
{
    while (s.len && chat_space(s.s[0])) {
        s.s++;
        s.len--;
    }
    while (s.len && chat_space(s.s[s.len - 1]))
        s.len--;
    return s;
}

static int chat_role_of(const char *r)
{
    if (!r)
        return -1;
    if (strcmp(r, "system") == 0)
        return CHAT_SYSTEM;
    if (strcmp(r, "user") == 0)
        return CHAT_USER;
    if (strcmp(r, "assistant") == 0)
        return CHAT_ASSISTANT;
    return -1;
}

static chat_str chat_content(const core_chat_msg *m)
{
    return (chat_str){m->content, strlen(m->content)};
}

static void chat_llama2(chat_out *o, int family, const core_chat_msg *msgs, size_t n)
{
    bool sys_tags = family != CHAT_LLAMA2;
    bool bos_inside = family == CHAT_LLAMA2_SYS_BOS;
    bool strip = family == CHAT_LLAMA2_SYS_STRIP;
    bool inside = true; /* the first [INST] is open already, without BOS */
    chat_puts(o, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        chat_str c = chat_content(&msgs[i]);
        if (strip)
            c = chat_trim(c);
        if (!inside) {
            inside = true;
            chat_puts(o, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        switch (chat_role_of(msgs[i].role)) {
        case CHAT_SYSTEM:
            chat_puts(o, sys_tags ? "<<SYS>>\n" : "");
            chat_put_str(o, c);
            chat_puts(o, sys_tags ? "\n<</SYS>>\n\n" : "\n");
            break;
        case CHAT_USER:
            chat_put_str(o, c);
            chat_puts(o, " [/INST]");
            break;
        default:
            chat_put_str(o, c);
            chat_puts(o, "</s>");
            inside = false;
            break;
        }
    }
}

static void chat_mistral(chat_out *o, int family, const core_chat_msg *msgs, size_t n)
{
    const char *lead = family == CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = family == CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool trim_assistant = family == CHAT_MISTRAL_V3;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            chat_puts(o, lead);
            chat_puts(o, "[INST]");
            chat_puts(o, trail);
            inside = true;
        }
        chat_str c = chat_content(&msgs[i]);
        switch (chat_role_of(msgs[i].role)) {
        case CHAT_SYSTEM:
            chat_put_str(o, c);
            chat_puts(o, "\n\n");
            break;
        case CHAT_USER:
            chat_put_str(o, c);
            chat_puts(o, lead);
            chat_puts(o, "[/INST]");
            break;
        default:
            chat_puts(o, trail);
            chat_put_str(o, trim_assistant ? chat_trim(c) : c);
            chat_puts(o, "</s>");
            inside = false;
            break;
        }
    }
}

static void chat_mistral_v7(chat_out *o, int family, const core_chat_msg *msgs, size_t n)
{
    const char *sp = family == CHAT_MISTRAL_V7 ? " " : "";
    for (size_t i = 0; i < n; i++) {
        chat_str c = chat_content(&msgs[i]);
        switch (chat_role_of(msgs[i].role)) {
        case CHAT_SYSTEM:
            chat_puts(o, "[SYSTEM_PROMPT]");
            chat_puts(o, sp);
            chat_put_str(o, c);
            chat_puts(o, "[/SYSTEM_PROMPT]");
            break;
        case CHAT_USER:
            chat_puts(o, "[INST]");
            chat_puts(o, sp);
            chat_put_str(o, c);
            chat_puts(o, "[/INST]");
            break;
        default:
            chat_puts(o, sp);
            chat_put_str(o, c);
            chat_puts(o, "</s>");
            break;
        }
    }
}

/* System messages have no turn of their own: their trimmed texts wait,
 * concatenated, for the next user turn (an assistant turn lets them wait). */
static void chat_gemma(chat_out *o, const core_chat_msg *msgs, size_t n, bool gen)
{
    size_t pending_from = 0;
    bool pending = false;
    for (size_t i = 0; i < n; i++) {
        int r = chat_role_of(msgs[i].role);
        if (r == CHAT_SYSTEM) {
            if (!pending)
                pending_from = i;
            pending = true;
            continue;
        }
        chat_puts(o, r == CHAT_ASSISTANT ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (pending && r != CHAT_ASSISTANT) {
            size_t sys_len = 0;
            for (size_t j = pending_from; j < i; j++)
                if (chat_role_of(msgs[j].role) == CHAT_SYSTEM)
                    sys_len += chat_trim(chat_content(&msgs[j])).len;
            if (sys_len) { /* llama.cpp tests the concatenation for emptiness */
                for (size_t j = pending_from; j < i; j++)
                    if (chat_role_of(msgs[j].role) == CHAT_SYSTEM)
                        chat_put_str(o, chat_trim(chat_content(&msgs[j])));
                chat_puts(o, "\n\n");
            }
            pending = false;
        }
        chat_put_str(o, chat_trim(chat_content(&msgs[i])));
        chat_puts(o, "<end_of_turn>\n");
    }
    if (gen)
        chat_puts(o, "<start_of_turn>model\n");
}

int chat_format(int family, const core_chat_msg *msgs, size_t n, bool add_generation_prompt,
                char *buf, size_t cap, size_t *len)
{
    size_t n_spans;
    return chat_format_spans(family, msgs, n, add_generation_prompt, buf, cap, len, NULL, 0, &n_spans);
}

int chat_format_spans(int family, const core_chat_msg *msgs, size_t n, bool add_generation_prompt,
                      char *buf, size_t cap, size_t *len, size_t *spans, size_t max_spans,
                      size_t *n_spans)
{
    *n_spans = 0;
    *len = 0;
    if (cap && buf)
        buf[0] = '\0';
    if (family < 0 || family >= CHAT_FAMILY_COUNT || (n && !msgs) || (cap && !buf))
        return CORE_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (chat_role_of(msgs[i].role) < 0 || !msgs[i].content)
            return CORE_EINVAL;

    chat_out o = {buf, cap, 0, spans, max_spans, 0};
    bool gen = add_generation_prompt;
    switch ((chat_family)family) {
    case CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            chat_puts(&o, "<|im_start|>");
            chat_puts(&o, msgs[i].role);
            chat_puts(&o, "\n");
            chat_put_str(&o, chat_content(&msgs[i]));
            chat_puts(&o, "<|im_end|>\n");
        }
        if (gen)
            chat_puts(&o, "<|im_start|>assistant\n");
        break;
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
    case CHAT_LLAMA2_SYS_BOS:
    case CHAT_LLAMA2_SYS_STRIP:
        chat_llama2(&o, family, msgs, n);
        break;
    case CHAT_MISTRAL_V1:
    case CHAT_MISTRAL_V3:
    case CHAT_MISTRAL_V3_TEKKEN:
        chat_mistral(&o, family, msgs, n);
        break;
    case CHAT_MISTRAL_V7:
    case CHAT_MISTRAL_V7_TEKKEN:
        chat_mistral_v7(&o, family, msgs, n);
        break;
    case CHAT_PHI3:
    case CHAT_FALCON3:
    case CHAT_ZEPHYR: {
        const char *end = family == CHAT_PHI3     ? "<|end|>\n"
                          : family == CHAT_ZEPHYR ? "<|endoftext|>\n"
                                                  : "\n";
        for (size_t i = 0; i < n; i++) {
            chat_puts(&o, "<|");
            chat_puts(&o, msgs[i].role);
            chat_puts(&o, "|>\n");
            chat_put_str(&o, chat_content(&msgs[i]));
            chat_puts(&o, end);
        }
        if (gen)
            chat_puts(&o, "<|assistant|>\n");
        break;
    }
    case CHAT_PHI4:
        for (size_t i = 0; i < n; i++) {
            chat_puts(&o, "<|im_start|>");
            chat_puts(&o, msgs[i].role);
            chat_puts(&o, "<|im_sep|>");
            chat_put_str(&o, chat_content(&msgs[i]));
            chat_puts(&o, "<|im_end|>");
        }
        if (gen)
            chat_puts(&o, "<|im_start|>assistant<|im_sep|>");
        break;
    case CHAT_GEMMA:
        chat_gemma(&o, msgs, n, gen);
        break;
    case CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            chat_puts(&o, "<|start_header_id|>");
            chat_puts(&o, msgs[i].role);
            chat_puts(&o, "<|end_header_id|>\n\n");
            chat_put_str(&o, chat_trim(chat_content(&msgs[i])));
            chat_puts(&o, "<|eot_id|>");
        }
        if (gen)
            chat_puts(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_FAMILY_COUNT:
        break;
    }
    if (cap)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    *len = o.len;
    *n_spans = o.n_spans;
    return o.len < cap ? CORE_OK : CORE_EINVAL;
}
