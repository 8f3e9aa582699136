/* test_chat: template detection and rendering against llama.cpp.
 *
 * The conversation, the templates and the expected renderings come from
 * llama.cpp's tests/test-chat-template.cpp (the "expected_output" of
 * llama_chat_apply_template). zephyr, falcon3, llama2-sys and
 * mistral-v7-tekken have no case there; their strings follow
 * llm_chat_apply_template() in llama.cpp's src/llama-chat.cpp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chat.h"

static const core_chat_msg conv[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV (sizeof conv / sizeof *conv)

static const struct {
    int family;
    const char *want;
} expected[] = {
    {CHAT_CHATML,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
     "question<|im_end|>\n<|im_start|>assistant\n"},
    {CHAT_LLAMA2,
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I "
     "am an assistant   </s>[INST] Another question [/INST]"},
    {CHAT_LLAMA2_SYS,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who "
     "are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]"},
    {CHAT_LLAMA2_SYS_BOS,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] "
     "Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]"},
    {CHAT_LLAMA2_SYS_STRIP,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who "
     "are you [/INST]I am an assistant</s>[INST] Another question [/INST]"},
    {CHAT_MISTRAL_V1,
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]  "
     "  I am an assistant   </s> [INST] Another question [/INST]"},
    {CHAT_MISTRAL_V3,
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am "
     "an assistant</s>[INST] Another question[/INST]"},
    {CHAT_MISTRAL_V3_TEKKEN,
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am "
     "an assistant   </s>[INST]Another question[/INST]"},
    {CHAT_MISTRAL_V7,
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi "
     "there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]"},
    {CHAT_MISTRAL_V7_TEKKEN,
     "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi "
     "there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another question[/INST]"},
    {CHAT_PHI3,
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
     "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   "
     "<|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    {CHAT_PHI4,
     "<|im_start|>system<|im_sep|>You are a helpful "
     "assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_sep|>"
     "Hi there<|im_end|><|im_start|>user<|im_sep|>Who are "
     "you<|im_end|><|im_start|>assistant<|im_sep|>   I am an assistant   "
     "<|im_end|><|im_start|>user<|im_sep|>Another "
     "question<|im_end|><|im_start|>assistant<|im_sep|>"},
    {CHAT_FALCON3,
     "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\nHi "
     "there\n<|user|>\nWho are you\n<|assistant|>\n   I am an assistant   \n<|user|>\nAnother "
     "question\n<|assistant|>\n"},
    {CHAT_ZEPHYR,
     "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n"
     "<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n "
     "  I am an assistant   <|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n"
     "<|assistant|>\n"},
    {CHAT_GEMMA,
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"
     "Hi there<end_of_turn>\n<start_of_turn>user\nWho are "
     "you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\n"
     "Another question<end_of_turn>\n<start_of_turn>model\n"},
    {CHAT_LLAMA3,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
     "header_id|>assistant<|end_header_id|>\n\nHi "
     "there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are "
     "you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
     "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
};

static void test_expected_outputs(void **state)
{
    (void)state;
    assert_int_equal(sizeof expected / sizeof *expected, CHAT_FAMILY_COUNT);
    char buf[2048];
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++) {
        size_t len = 0;
        int rc = chat_format(expected[i].family, conv, N_CONV, true, buf, sizeof buf, &len);
        if (rc != 0 || strcmp(buf, expected[i].want) != 0)
            fprintf(stderr, "family %s:\n got: %s\nwant: %s\n",
                    chat_family_name(expected[i].family), buf, expected[i].want);
        assert_int_equal(rc, 0);
        assert_int_equal(len, strlen(expected[i].want));
        assert_string_equal(buf, expected[i].want);
    }
}

/* Templates from llama.cpp's test cases (the two long Mistral v3 ones are
 * cut to the lines that decide their detection). */
static const struct {
    const char *tmpl;
    int family;
} detect_cases[] = {
    {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
     "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
     "}}{% endif %}",
     CHAT_CHATML},
    {"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 "
     "% 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
     "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] "
     "' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
     "message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
     "are supported!') }}{% endif %}{% endfor %}",
     CHAT_LLAMA2},
    {"{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n{%- "
     "if idx > 1 -%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n{%- "
     "else -%}\n{{- messages[idx]['content'] + ' [/INST]' -}}\n{%- endif -%}\n{% elif "
     "messages[idx]['role'] == 'system' %}\n{{- '[INST] <<SYS>>\\n' + messages[idx]['content'] + "
     "'\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == 'assistant' -%}\n{{- ' '  + "
     "messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n{% endfor %}",
     CHAT_LLAMA2_SYS_BOS},
    {"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
     "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
     "{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
     "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message "
     "+ '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
     "%}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% "
     "endif %}{% endfor %}",
     CHAT_LLAMA2_SYS_STRIP},
    {"{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% "
     "endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = "
     "'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + "
     "'\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if "
     "add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
     CHAT_GEMMA},
    {"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
     "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
     "%}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
     CHAT_LLAMA3},
    {"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + "
     "'\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif "
     "(message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% "
     "endfor %}",
     CHAT_PHI3},
    {"{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + "
     "'<|end|>\n' }}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != "
     "'assistant' %}{{- '<|assistant|>\n' -}}{% endif %}",
     CHAT_PHI3},
    {"{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = "
     "messages[0]['content'] %}\n{%- endif %}\n{{- bos_token }}\n{%- for message in loop_messages "
     "%}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is "
     "defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' "
     "[/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' "
     "[/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        "
     "{{- ' ' + message['content'] + eos_token}}\n    {%- endif %}\n{%- endfor %}\n",
     CHAT_MISTRAL_V1},
    {"{%- if tools is not none and (message == user_messages[-1]) %}\n            {{- "
     "\"[AVAILABLE_TOOLS] [\" }}\n{%- if loop.last and system_message is defined %}\n            {{- "
     "\"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n",
     CHAT_MISTRAL_V3},
    {"{%- if tools is not none and (message == user_messages[-1]) %}\n            {{- "
     "\"[AVAILABLE_TOOLS][\" }}\n{%- if loop.last and system_message is defined %}\n            {{- "
     "\"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n",
     CHAT_MISTRAL_V3_TEKKEN},
    {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
     "message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' "
     "+ message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
     "message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, system and "
     "assistant roles are supported!') }}{% endif %}{% endfor %}",
     CHAT_MISTRAL_V7},
    {"{% for message in messages %}{% if (message['role'] == 'system') "
     "%}{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% elif "
     "(message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + "
     "'<|im_end|><|im_start|>assistant<|im_sep|>'}}{% elif (message['role'] == 'assistant') "
     "%}{{message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}",
     CHAT_PHI4},
    {"{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
     "message['content'] + '<|endoftext|>' }}\n{% elif message['role'] == 'assistant' %}\n{{ "
     "'<|assistant|>\n'  + message['content'] + '<|endoftext|>' }}{% endif %}{% endfor %}",
     -1 /* <|assistant|> and <|user|> without </s>: GLM-Edge, tested before zephyr */},
    {"{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|endoftext|>\n' }}{% "
     "endfor %}<|user|>",
     CHAT_ZEPHYR},
    {"{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '</s>\n' }}{% endfor "
     "%}<|user|><|assistant|>",
     CHAT_FALCON3},
    /* Families llama.cpp knows and we do not render: unknown, not misread. */
    {"{{ bos_token }}{% for message in messages %}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + "
     "message['content'] + '<|END_OF_TURN_TOKEN|>' }}{% endfor %}",
     -1},
    {"{% for message in messages %}{{bos_token + message['role'] + '\\n' + message['content'] + "
     "eos_token + '\\n'}}{% endfor %}<start_of_turn>",
     -1 /* Monarch, tested before gemma */},
    {"{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- "
     "'SYSTEM: ' + message['content'] + '\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}{{- "
     "'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + "
     "'</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}<|start_header_id|><|end_header_id|>",
     -1 /* Vicuna, tested before llama3 */},
    {"{% if tools %}<|im_start|>{% endif %}<end_of_utterance>", -1 /* SmolVLM */},
    {"[gMASK]<sop>{% for item in messages %}<|assistant|><|user|>{% endfor %}", -1},
    {"INVALID TEMPLATE", -1},
    {"<|start_header_id|>", -1 /* llama3 needs both header tokens */},
    {"mistral: any text starting so", CHAT_LLAMA2},
};

static void test_detect(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof detect_cases / sizeof *detect_cases; i++) {
        int got = chat_detect(detect_cases[i].tmpl, strlen(detect_cases[i].tmpl));
        if (got != detect_cases[i].family)
            fprintf(stderr, "case %zu: got %d want %d\n", i, got, detect_cases[i].family);
        assert_int_equal(got, detect_cases[i].family);
    }
    /* The default, and names. */
    assert_int_equal(chat_detect(NULL, 0), CHAT_CHATML);
    assert_int_equal(chat_detect("", 0), CHAT_CHATML);
    assert_int_equal(chat_detect("gemma", 5), CHAT_GEMMA);
    assert_int_equal(chat_detect("llama3", 6), CHAT_LLAMA3);
    /* Length-delimited: a NUL inside does not end the template. */
    assert_int_equal(chat_detect("x\0<|im_start|>", 14), CHAT_CHATML);
    assert_int_equal(chat_detect("<|im_start|>", 11), -1);
}

static void test_names(void **state)
{
    (void)state;
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++) {
        const char *name = chat_family_name(f);
        assert_non_null(name);
        assert_int_equal(chat_family_from_name(name), f);
    }
    assert_null(chat_family_name(-1));
    assert_null(chat_family_name(CHAT_FAMILY_COUNT));
    assert_int_equal(chat_family_from_name("chatml"), CHAT_CHATML);
    assert_int_equal(chat_family_from_name("llama2"), CHAT_LLAMA2);
    assert_int_equal(chat_family_from_name("phi3"), CHAT_PHI3);
    assert_int_equal(chat_family_from_name("ChatML"), -1);
    assert_int_equal(chat_family_from_name("command-r"), -1);
    assert_int_equal(chat_family_from_name(""), -1);
    assert_int_equal(chat_family_from_name(NULL), -1);
}

static void test_sizes_and_truncation(void **state)
{
    (void)state;
    char full[2048], buf[2048];
    for (int f = 0; f < CHAT_FAMILY_COUNT; f++) {
        size_t len = 0, need = 0;
        assert_int_equal(chat_format(f, conv, N_CONV, true, full, sizeof full, &len), 0);
        /* Size query. */
        assert_int_equal(chat_format(f, conv, N_CONV, true, NULL, 0, &need), CORE_EINVAL);
        assert_int_equal(need, len);
        /* Every capacity up to len: a NUL-terminated prefix and the size. */
        for (size_t cap = 1; cap <= len; cap++) {
            memset(buf, 'X', sizeof buf);
            size_t got = 0;
            assert_int_equal(chat_format(f, conv, N_CONV, true, buf, cap, &got), CORE_EINVAL);
            assert_int_equal(got, len);
            assert_int_equal(strlen(buf), cap - 1);
            assert_memory_equal(buf, full, cap - 1);
            assert_int_equal(buf[cap], 'X'); /* nothing past the capacity */
        }
        size_t got = 0;
        assert_int_equal(chat_format(f, conv, N_CONV, true, buf, len + 1, &got), 0);
        assert_string_equal(buf, full);
    }
}

static void test_generation_prompt(void **state)
{
    (void)state;
    const core_chat_msg one[] = {{"user", "Hi"}};
    char buf[256];
    size_t len;
    assert_int_equal(chat_format(CHAT_CHATML, one, 1, false, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "<|im_start|>user\nHi<|im_end|>\n");
    assert_int_equal(chat_format(CHAT_LLAMA3, one, 1, false, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    assert_int_equal(chat_format(CHAT_GEMMA, one, 1, false, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "<start_of_turn>user\nHi<end_of_turn>\n");
    /* [INST] families end in [/INST] either way. */
    assert_int_equal(chat_format(CHAT_LLAMA2, one, 1, false, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "[INST] Hi [/INST]");
    assert_int_equal(chat_format(CHAT_LLAMA2, one, 1, true, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "[INST] Hi [/INST]");
    /* No messages. */
    assert_int_equal(chat_format(CHAT_CHATML, NULL, 0, true, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "<|im_start|>assistant\n");
    assert_int_equal(chat_format(CHAT_LLAMA2, NULL, 0, true, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "[INST] ");
}

static void test_gemma_system(void **state)
{
    (void)state;
    char buf[512];
    size_t len;
    /* Several system messages wait, trimmed and concatenated, past an
     * assistant turn for the next user turn. */
    const core_chat_msg a[] = {{"system", " A "}, {"assistant", "x"}, {"system", "B\n"},
                               {"user", " q "}};
    assert_int_equal(chat_format(CHAT_GEMMA, a, 4, false, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "<start_of_turn>model\nx<end_of_turn>\n<start_of_turn>user\nAB\n\nq"
                             "<end_of_turn>\n");
    /* Blank system text adds nothing; a system message at the end is lost,
     * as in llama.cpp. */
    const core_chat_msg b[] = {{"system", "  "}, {"user", "q"}, {"system", "late"}};
    assert_int_equal(chat_format(CHAT_GEMMA, b, 3, true, buf, sizeof buf, &len), 0);
    assert_string_equal(buf, "<start_of_turn>user\nq<end_of_turn>\n<start_of_turn>model\n");
}

static void test_bad_input(void **state)
{
    (void)state;
    char buf[64] = "unchanged";
    size_t len = 99;
    const core_chat_msg tool[] = {{"user", "a"}, {"tool", "b"}};
    assert_int_equal(chat_format(CHAT_CHATML, tool, 2, true, buf, sizeof buf, &len), CORE_EINVAL);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    const core_chat_msg norole[] = {{NULL, "a"}};
    assert_int_equal(chat_format(CHAT_CHATML, norole, 1, true, buf, sizeof buf, &len), CORE_EINVAL);
    const core_chat_msg nocontent[] = {{"user", NULL}};
    assert_int_equal(chat_format(CHAT_CHATML, nocontent, 1, true, buf, sizeof buf, &len),
                     CORE_EINVAL);
    assert_int_equal(chat_format(-1, conv, N_CONV, true, buf, sizeof buf, &len), CORE_EINVAL);
    assert_int_equal(chat_format(CHAT_FAMILY_COUNT, conv, N_CONV, true, buf, sizeof buf, &len),
                     CORE_EINVAL);
    assert_int_equal(chat_format(CHAT_CHATML, NULL, 2, true, buf, sizeof buf, &len), CORE_EINVAL);
    assert_int_equal(chat_format(CHAT_CHATML, conv, N_CONV, true, NULL, 10, &len), CORE_EINVAL);
    /* Case matters, as in the templates. */
    const core_chat_msg upper[] = {{"User", "a"}};
    assert_int_equal(chat_format(CHAT_CHATML, upper, 1, true, buf, sizeof buf, &len), CORE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expected_outputs),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_sizes_and_truncation),
        cmocka_unit_test(test_generation_prompt),
        cmocka_unit_test(test_gemma_system),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
