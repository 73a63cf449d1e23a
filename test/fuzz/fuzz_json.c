/* libFuzzer harness for the job JSON path: the JSON reader (jsmn plus our
 * checks), request validation for every route, stored-params parsing, and a
 * writer round trip: whatever the reader accepts as a string must come back
 * out of the writer as valid JSON. */
#include "buf.h"
#include "job.h"
#include "json_reader.h"
#include "json_writer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct job_request jr;
    struct job_error err;
    job_parse_request(text, size, JOB_TYPE_UNKNOWN, 180, 600, &jr, &err);
    job_parse_request(text, size, JOB_READ, 180, 600, &jr, &err);
    job_parse_request(text, size, JOB_BURN, 180, 600, &jr, &err);
    job_parse_params(JOB_READ, text, size, 180, 600, &jr, &err);

    struct json_doc doc;
    const char *why;
    if (json_parse(&doc, text, size, &why) != 0)
        return 0;
    for (int i = 0; i < doc.count; i++) {
        int64_t v;
        json_get_int64(&doc, i, &v);
        char *s = json_get_string(&doc, i);
        if (!s)
            continue;
        struct buf out = {0};
        json_escape_string(&out, s, strlen(s));
        struct json_doc back;
        if (json_parse(&back, out.data, out.len, &why) != 0)
            abort(); /* the writer produced JSON the reader refuses */
        buf_free(&out);
        free(s);
    }
    return 0;
}
