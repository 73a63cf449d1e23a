/* log: one line per event on stderr, as JSON or text (SURGE_LOG_FORMAT). */
#ifndef SURGE_LOG_H
#define SURGE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

/* Called once at start; app names the binary in every line. */
void log_setup(const char *app, enum log_level min_level, enum log_format format);
/* Writes one line: event is a short snake_case name ("job_finished"), the
 * formatted text is the human message. Lines below the minimum level are dropped. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) log_msg(LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
