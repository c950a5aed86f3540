/*  bm_deps.h - a job's dependencies (SUBMIT dependsOn): the jobs it waits
    for in state waiting-children, and what they ended with.

    A job with dependsOn holds one bm_deps_t (job->deps; NULL for every
    other job, so that they pay one branch).  Each dependency is pending
    until it ends: completed (its result kept when the job asked for its
    dependencies' results), or failed, cancelled or removed, which fails
    the job with dependency_failed unless it asked to ignore that.  The
    broker finds the jobs waiting for one that ends through an index by
    dependency id (bm_deps.c), not by scanning.  */
#ifndef BM_DEPS_H
#define BM_DEPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *id;                   //  The dependency's job id
    bool pending;               //  Not ended yet (as far as the job knows)
    bool failed;                //  Ended failed, cancelled or removed
    bool wait_retry;            //  Pending for the dependency's own RETRY:
                                //  it had failed when the job was retried
    int64_t failed_at;          //  With wait_retry: when it had ended (its
                                //  finishedAt; 0 not known yet): ended
                                //  otherwise, it ended again (a RETRY's run)
    char *code;                 //  How ("failed: bot_failed", "was removed"),
                                //  for the job's error message; or NULL
    char *result;               //  msgpack bytes, when it completed and the
    size_t result_size;         //  job asked for results; else NULL (a
                                //  bm_deps_result, shared)
    bool result_saved;          //  result is in the job's Redis record, in
                                //  its own field (issued or read back)...
    uint64_t saved_drops;       //  ...as of this count of the store's dropped
                                //  writes (bm_store_drops): once it grew, the
                                //  write may have been one, and is made again
} bm_dep_t;

typedef struct _bm_deps_t {
    size_t count;               //  dependsOn's ids, in its order
    size_t pending;             //  Of them not ended yet
    bool ignore_failure;        //  onDependencyFailure "ignore"
    bool results;               //  dependencyResults: the bot gets them
    bm_dep_t items [];
} bm_deps_t;

//  A kept result: one copy of a dependency's result, shared by the jobs
//  that were waiting for it when it ended, however many (counted holders).
//  A copy of size bytes of data, one holder.
char *bm_deps_result_new (const char *data, size_t size);
//  One more holder of result (made by bm_deps_result_new); returns it.
char *bm_deps_result_ref (char *result);
//  One holder less (the last frees it); *result_p NULL.
void bm_deps_result_free (char **result_p);

//  count dependencies, none set.
bm_deps_t *bm_deps_new (size_t count);
void bm_deps_destroy (bm_deps_t **self_p);
//  The item of id, or NULL.
bm_dep_t *bm_deps_find (bm_deps_t *self, const char *id, size_t len);

#endif
