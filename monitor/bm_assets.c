/*  bm_assets.c - look up embedded dashboard files by request path.
    The table itself is generated (bm_assets_data.c, see embed_assets.cmake). */
#include "bm_assets.h"

#include <string.h>

typedef struct {
    const char *name;                   //  File name inside monitor/dashboard/
    const unsigned char *data;          //  Contents (NUL-terminated, not counted)
    size_t size;                        //  Size in bytes
} bm_asset_t;

extern const bm_asset_t bm_assets_table [];
extern const size_t bm_assets_table_count;

static const char *
s_content_type (const char *name)
{
    const char *dot = strrchr (name, '.');
    if (!dot)
        return "application/octet-stream";
    if (strcmp (dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (strcmp (dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (strcmp (dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (strcmp (dot, ".svg") == 0)
        return "image/svg+xml";
    if (strcmp (dot, ".png") == 0)
        return "image/png";
    if (strcmp (dot, ".ico") == 0)
        return "image/x-icon";
    if (strcmp (dot, ".json") == 0)
        return "application/json";
    return "application/octet-stream";
}

int
bm_assets_find (const char *path, const unsigned char **data, size_t *size,
                const char **content_type)
{
    if (!path)
        return -1;
    size_t prefix = strlen (BM_ASSETS_PREFIX);
    if (strncmp (path, BM_ASSETS_PREFIX, prefix))
        return -1;
    const char *rest = path + prefix;
    size_t length = strcspn (rest, "?#");
    const char *name;
    size_t name_length;
    if (length == 0 || (length == 1 && rest [0] == '/')) {
        name = "index.html";
        name_length = strlen (name);
    }
    else
    if (rest [0] == '/') {
        name = rest + 1;
        name_length = length - 1;
    }
    else
        return -1;
    for (size_t i = 0; i < bm_assets_table_count; i++) {
        const bm_asset_t *asset = &bm_assets_table [i];
        if (strlen (asset->name) == name_length && memcmp (asset->name, name, name_length) == 0) {
            if (data)
                *data = asset->data;
            if (size)
                *size = asset->size;
            if (content_type)
                *content_type = s_content_type (asset->name);
            return 0;
        }
    }
    return -1;
}
