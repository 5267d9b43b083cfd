/*
 * GET / and HEAD / for the Elasticsearch that deploy/local/stack runs.
 *
 * The only Elasticsearch 8 server build on Maven Central is the "integ-test"
 * zip, which leaves out the rest-root module that every real distribution
 * ships; without it GET / answers 405, so elasticsearch-py's ping() is False
 * and info() raises. The stack compiles this file against the zip's own jars
 * (lib/) and installs it as modules/kubepulse-rest-root. It answers with the
 * same document as the real module (node and cluster names, cluster_uuid,
 * version block, tagline), read from the running node; it adds nothing else.
 */
package dev.kubepulse.localstack;

import org.elasticsearch.Build;
import org.elasticsearch.cluster.ClusterName;
import org.elasticsearch.cluster.metadata.IndexNameExpressionResolver;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.common.io.stream.NamedWriteableRegistry;
import org.elasticsearch.common.settings.ClusterSettings;
import org.elasticsearch.common.settings.IndexScopedSettings;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.common.settings.SettingsFilter;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.index.IndexVersion;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.rest.RestChannel;
import org.elasticsearch.rest.RestController;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.xcontent.XContentBuilder;

import java.util.Collection;
import java.util.List;
import java.util.function.Predicate;
import java.util.function.Supplier;

public class RestRootPlugin extends Plugin implements ActionPlugin {

    private volatile ClusterService clusterService;

    @Override
    public Collection<?> createComponents(PluginServices services) {
        clusterService = services.clusterService();
        return List.of();
    }

    @Override
    public Collection<RestHandler> getRestHandlers(
        Settings settings,
        NamedWriteableRegistry namedWriteableRegistry,
        RestController restController,
        ClusterSettings clusterSettings,
        IndexScopedSettings indexScopedSettings,
        SettingsFilter settingsFilter,
        IndexNameExpressionResolver indexNameExpressionResolver,
        Supplier<DiscoveryNodes> nodesInCluster,
        Predicate<NodeFeature> clusterSupportsFeature
    ) {
        return List.of(new RootHandler(settings));
    }

    private final class RootHandler implements RestHandler {
        private final String nodeName;
        private final String clusterName;

        RootHandler(Settings settings) {
            this.nodeName = Node.NODE_NAME_SETTING.get(settings);
            this.clusterName = ClusterName.CLUSTER_NAME_SETTING.get(settings).value();
        }

        @Override
        public List<Route> routes() {
            return List.of(new Route(RestRequest.Method.GET, "/"), new Route(RestRequest.Method.HEAD, "/"));
        }

        @Override
        public String getName() {
            return "kubepulse_local_main_action";
        }

        @Override
        public boolean canTripCircuitBreaker() {
            return false;
        }

        @Override
        public void handleRequest(RestRequest request, RestChannel channel, NodeClient client) throws Exception {
            Build build = Build.current();
            ClusterService cs = clusterService;
            String clusterUuid = cs == null ? "_na_" : cs.state().metadata().clusterUUID();
            XContentBuilder builder = channel.newBuilder();
            if (request.hasParam("pretty") == false) {
                builder.prettyPrint().lfAtEnd();   // like the real endpoint: pretty unless ?pretty=false
            }
            builder.startObject();
            builder.field("name", nodeName);
            builder.field("cluster_name", clusterName);
            builder.field("cluster_uuid", clusterUuid);
            builder.startObject("version");
            builder.field("number", build.qualifiedVersion());
            builder.field("build_flavor", "default");
            builder.field("build_type", build.type().displayName());
            builder.field("build_hash", build.hash());
            builder.field("build_date", build.date());
            builder.field("build_snapshot", build.isSnapshot());
            builder.field("lucene_version", IndexVersion.current().luceneVersion().toString());
            builder.field("minimum_wire_compatibility_version", build.minWireCompatVersion());
            builder.field("minimum_index_compatibility_version", build.minIndexCompatVersion());
            builder.endObject();
            builder.field("tagline", "You Know, for Search");
            builder.endObject();
            channel.sendResponse(new RestResponse(RestStatus.OK, builder));
        }
    }
}
