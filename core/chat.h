/* chat.h: chat templates as fixed formats, not a Jinja engine.
 *
 * A model's tokenizer.chat_template (Jinja) is mapped to one of the
 * families below by distinctive substrings, in the order llama.cpp's
 * llm_chat_detect_template() tests them, and chat_format() renders the
 * messages byte for byte as llama.cpp's llama_chat_apply_template() does
 * for that family. Like llama.cpp, no family writes the BOS token text
 * (<s>, <|begin_of_text|>) at the start: the tokenizer adds BOS
 * (core_tokenize with add_special). LLAMA2_SYS_BOS writes "<s>" before
 * each later [INST], as that template does.
 *
 * Families and their names (the names llama.cpp uses):
 *   chatml             <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n
 *   llama2             [INST] system\nuser [/INST]assistant</s>[INST] ...
 *   llama2-sys         same with <<SYS>>\nsystem\n<</SYS>>\n\n
 *   llama2-sys-bos     same, "<s>" before every [INST] but the first
 *   llama2-sys-strip   same as llama2-sys, contents trimmed
 *   mistral-v1         " [INST] " ... " [/INST]" ... "</s>"
 *   mistral-v3         "[INST] " ... "[/INST]" " assistant(trimmed)</s>"
 *   mistral-v3-tekken  "[INST]" ... "[/INST]" "assistant</s>"
 *   mistral-v7         [SYSTEM_PROMPT] s[/SYSTEM_PROMPT][INST] u[/INST] a</s>
 *   mistral-v7-tekken  the same without the spaces
 *   phi3               <|role|>\ncontent<|end|>\n ... <|assistant|>\n
 *   phi4               <|im_start|>role<|im_sep|>content<|im_end|> ...
 *   falcon3            <|role|>\ncontent\n ... <|assistant|>\n
 *   zephyr             <|role|>\ncontent<|endoftext|>\n ... <|assistant|>\n
 *   gemma              <start_of_turn>user\n...<end_of_turn>\n, assistant is
 *                      "model", system text (trimmed) opens the next user turn
 *   llama3             <|start_header_id|>role<|end_header_id|>\n\ncontent
 *                      (trimmed)<|eot_id|> ... <|start_header_id|>assistant...
 * The [INST] families (llama2*, mistral*) have no generation prompt: a
 * conversation ending in a user turn already ends in [/INST].
 *
 * Roles are "system", "user" and "assistant"; any other is CORE_EINVAL.
 */
#ifndef CHAT_H
#define CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core.h"

typedef enum {
    CHAT_CHATML = 0,
    CHAT_LLAMA2,
    CHAT_LLAMA2_SYS,
    CHAT_LLAMA2_SYS_BOS,
    CHAT_LLAMA2_SYS_STRIP,
    CHAT_MISTRAL_V1,
    CHAT_MISTRAL_V3,
    CHAT_MISTRAL_V3_TEKKEN,
    CHAT_MISTRAL_V7,
    CHAT_MISTRAL_V7_TEKKEN,
    CHAT_PHI3,
    CHAT_PHI4,
    CHAT_FALCON3,
    CHAT_ZEPHYR,
    CHAT_GEMMA,
    CHAT_LLAMA3,
    CHAT_FAMILY_COUNT
} chat_family;

/* Family of a Jinja chat template (len bytes, need not be NUL-terminated;
 * a family name is accepted too). NULL or empty: CHAT_CHATML, the default
 * llama.cpp also uses when a model has no template. -1 when the template is
 * unknown, or is one that llama.cpp recognizes as a family we do not
 * implement (command-r, deepseek, ...): the caller picks a fallback. */
int chat_detect(const char *tmpl, size_t len);

/* Family for a name above (exact, case-sensitive), -1 when unknown. */
int chat_family_from_name(const char *name);

/* Name of a family, NULL when out of range. Static string. */
const char *chat_family_name(int family);

/* Renders msgs[0..n). *len gets the length of the whole rendering (without
 * the NUL). It is written to buf when *len < cap; otherwise CORE_EINVAL,
 * and buf (when cap > 0) holds the first cap - 1 bytes and a NUL. buf may
 * be NULL when cap is 0 (a size query). CORE_EINVAL also for an unknown
 * family, a NULL role or content, or an unknown role (then *len is 0). */
int chat_format(int family, const core_chat_msg *msgs, size_t n, bool add_generation_prompt,
                char *buf, size_t cap, size_t *len);

/* chat_format that also reports where message contents landed in buf: up
 * to max_spans pairs (offset, length) in spans, the full count in *n_spans
 * (at most one per message). Lets the caller tokenize the template's own
 * special tokens while treating what users wrote as plain text. */
int chat_format_spans(int family, const core_chat_msg *msgs, size_t n, bool add_generation_prompt,
                      char *buf, size_t cap, size_t *len, size_t *spans, size_t max_spans,
                      size_t *n_spans);

#endif
