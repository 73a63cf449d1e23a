/* log: one line per event on stderr, as JSON or text. */
#include "log.h"
#include "buf.h"
#include "json_writer.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static const char *app_name = "surge";
static enum log_level min_level = LOG_INFO;
static enum log_format out_format = LOG_FORMAT_JSON;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(const char *app, enum log_level level, enum log_format format)
{
    app_name = app;
    min_level = level;
    out_format = format;
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    char ts[32];
    util_format_iso8601(util_now_ms(), ts, sizeof ts);
    struct buf line = {0};
    if (out_format == LOG_FORMAT_JSON) {
        struct json_writer w;
        jw_init(&w, &line);
        jw_object_begin(&w);
        jw_key_string(&w, "ts", ts);
        jw_key_string(&w, "level", level_names[level]);
        jw_key_string(&w, "app", app_name);
        jw_key_string(&w, "event", event);
        jw_key_string(&w, "msg", text);
        jw_object_end(&w);
    } else {
        buf_printf(&line, "%s %-5s %s %s: %s", ts, level_names[level], app_name, event, text);
    }
    buf_append(&line, "\n", 1);
    /* One write per line so lines of concurrent threads never interleave. */
    ssize_t ignored = write(STDERR_FILENO, line.data, line.len);
    (void)ignored;
    buf_free(&line);
}
