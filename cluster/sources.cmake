# cluster/: an SPMD job's pool (dpool_pool_spmd): the launcher's ranks,
# rank 0's card and the rendezvous, over an embedded pool.
add_library (dpool_cluster OBJECT cluster/dp_launcher.c cluster/dp_rendezvous.c cluster/dp_spmd.c)
target_include_directories (dpool_cluster PUBLIC ${PROJECT_SOURCE_DIR}/cluster)
target_link_libraries (dpool_cluster PUBLIC dpool_embedded)
