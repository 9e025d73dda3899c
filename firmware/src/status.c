/* status.c: names of ekws_status_t values. */
#include "ekws/types.h"

static const char *const status_names[EKWS_STATUS_COUNT] = {
    [EKWS_OK] = "ok",
    [EKWS_ERR_NULL] = "null pointer",
    [EKWS_ERR_CONFIG] = "invalid configuration",
    [EKWS_ERR_BUFFER_TOO_SMALL] = "buffer too small",
    [EKWS_ERR_ARG] = "argument out of range",
    [EKWS_ERR_STATE] = "not initialized",
};

const char *ekws_status_str(ekws_status_t status) {
    if ((unsigned)status >= (unsigned)EKWS_STATUS_COUNT) {
        return "unknown status";
    }
    return status_names[status];
}
