/*  bm_assets.h - the dashboard's static files, embedded at build time.

    monitor/dashboard/ (index.html, app.js, app.css) is turned into C arrays
    by embed_assets.cmake; the gateway serves them under /admin/queues:

        /admin/queues, /admin/queues/, /admin/queues/index.html -> index.html
        /admin/queues/app.js, /admin/queues/app.css             -> those files

    A query string (?...) is ignored.  Data is static: never free it. */
#ifndef BM_ASSETS_H
#define BM_ASSETS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BM_ASSETS_PREFIX "/admin/queues"

//  Find the asset for a request path.  Returns 0 and fills data, size and
//  content_type (each may be NULL) if found, -1 if not.
int bm_assets_find (const char *path, const unsigned char **data, size_t *size,
                    const char **content_type);

#ifdef __cplusplus
}
#endif

#endif
